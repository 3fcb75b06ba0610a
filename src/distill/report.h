// `orchard distill report` (issue 18): distillation runs side by side, as one self-contained HTML
// page (inline CSS and SVG; no script, no external resource) that people look at rather than read.
//
// Inputs. A training run's folder holds log.jsonl (orchard train writes it), one JSON object per line:
//   {"step": int, "loss": number|null, "lr", "grad_norm", "tokens", "tokens_per_s",
//    "eval_loss": number|null (optional), "skipped": true (optional),
//    "eval": {"agreement", "kl", "ce", "rows"} (optional: held-out metrics against the teacher)}
// A resumed run appends to the same log, so a step may come twice: the later line wins. An
// evaluation file (EVAL.json, `orchard distill eval`) holds a student's final held-out metrics:
//   {"student", "data", "examples", "rows", "agreement", "kl", "ce", "per_example": {"kl": [], "ce": []},
//    "teacher_score": {"mean_logprob_per_token", "tokens"} (optional),
//    "teacher_self_logprob_per_token" (optional)}
//
// Runs are grouped by their label's part before the first '/' ("sft/seed1" and "sft/seed2" are group
// "sft"); a group's summary gives the mean, the min-max and the sample standard deviation over its
// runs of the final agreement, KL, CE and teacher score (from the run's EVAL.json when given, else
// the log's last held-out evaluation).
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace orchard::distill {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Point {
  int64_t step = 0;
  double value = 0;
};

struct RunLog {
  std::string label, group;
  std::string path;  // the log.jsonl read
  // Sorted by step, one point per step (the last line of a step wins); null values are absent.
  std::vector<Point> loss, eval_loss, agreement, kl, ce;
  int64_t lines = 0;                  // non-blank lines read
  int64_t last_step = -1;             // -1: no line
  std::vector<std::string> warnings;  // e.g. a torn last line (a run killed mid-write), skipped
};

// The group of a label: its part before the first '/', or the whole label.
std::string group_of(const std::string& label);

// Reads DIR/log.jsonl (or the file itself when given a file). orchard::Error "FILE:LINE: what" for a
// line that is not such an object; a last line without its newline that does not parse is a run
// killed mid-write: skipped, with a warning. Files over 256 MiB are refused.
RunLog read_run_log(const std::string& dir_or_log_path, const std::string& label);

struct EvalResult {
  std::string path, student, data;
  int64_t examples = 0, rows = 0;
  double agreement = kNaN, kl = kNaN, ce = kNaN;  // NaN: null in the file (no rows for that metric)
  std::optional<double>
      teacher_score;  // teacher_score.mean_logprob_per_token: the teacher's view of the student's answers
  std::optional<int64_t> teacher_score_tokens;
  std::optional<double> teacher_self;  // teacher_self_logprob_per_token: the same for the teacher's own answers
};

// orchard::Error "FILE: field: what" for a file that is not such an object.
EvalResult read_eval(const std::string& path);

struct ReportRun {
  RunLog log;
  std::optional<EvalResult> eval;
};

// A run as the CLI names it: "LABEL=DIR[:EVAL.json]" (the EVAL.json part after the last ':'; DIR may be
// empty when EVAL.json is given: a run known only by its final evaluation). orchard::Error naming the
// spec when the label or both paths are missing.
struct RunSpec {
  std::string label, dir, eval;
};
RunSpec parse_run_spec(const std::string& spec);

struct ReportInput {
  std::string title = "Distillation report";
  std::string command_line;  // shown under the title: how the page was made
  std::vector<ReportRun> runs;
};

// Mean, range and sample standard deviation (n - 1) of the finite values given; NaN where undefined
// (no value; the deviation of one value).
struct Spread {
  int n = 0;
  double mean = kNaN, min = kNaN, max = kNaN, sd = kNaN;
};
Spread spread_of(const std::vector<double>& values);

// A run's final metrics: from its EVAL.json when given, else from the log's last evaluation (NaN
// where neither has them).
struct RunFinal {
  double agreement = kNaN, kl = kNaN, ce = kNaN, teacher_score = kNaN;
  std::string source;  // "EVAL.json path", "log step N" or "none"
};
RunFinal final_metrics(const ReportRun& run);

struct GroupSummary {
  std::string group;
  std::vector<size_t> runs;  // indices into ReportInput::runs
  Spread agreement, kl, ce, teacher_score;
};
// Groups in the order of their first run.
std::vector<GroupSummary> summarize(const ReportInput& input);

// Each later group against the first (the baseline), metric by metric: the difference of the means
// and, pairing runs by their label's part after the first '/' ("kd/seed1" with "sft/seed1"), on how
// many pairs the group did better (agreement and teacher score higher, KL and CE lower). Pairs where
// either run lacks the metric are not counted.
struct Comparison {
  std::string group, baseline, metric;
  double mean_difference = kNaN;  // group's mean - baseline's mean
  int pairs = 0, better = 0;
};
std::vector<Comparison> compare_groups(const ReportInput& input);

// The group summary and the comparisons as plain text (what the CLI prints).
std::string summary_text(const ReportInput& input);

// The whole page. Deterministic: the same input gives the same bytes.
std::string render_report(const ReportInput& input);

// ---- The plotting helper (exposed for the tests) ----

// Tick values k * step inside [lo, hi] (ends included, within rounding), step 1, 2 or 5 x 10^n chosen
// to give about `target` intervals. lo > hi are swapped; lo == hi gives that one value.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// A tick's label: as many decimals as the step needs ("0.2", "0.0015", "500").
std::string tick_label(double value, double step);

struct XY {
  double x = 0, y = 0;
};
struct Series {
  std::string name;    // shown as the line's tooltip (<title>)
  std::string colour;  // CSS colour
  bool bold = false;   // a group's mean (or a lone run): thick and opaque; else thin and light
  std::vector<XY> points;
};
struct LegendEntry {
  std::string text, colour;
};
struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::vector<LegendEntry> legend;
  std::string empty_text = "no data";  // shown instead of a plot when no series has a point
};
// The chart's fixed geometry: the plot area (data range exactly) inside a width x height picture.
struct ChartGeometry {
  static constexpr double width = 900, height = 380;
  static constexpr double left = 78, right = 700, top = 40, bottom = 320;  // the plot area
  // The frame and grid reach this far beyond the plot area, so that a line at the data's extreme
  // does not run along the frame.
  static constexpr double pad = 8;
};
// An <svg> element; each series a <polyline class="series" points="x,y ..."> (a lone point a
// <circle>) mapping the data's x and y ranges exactly onto [left, right] and [bottom, top].
std::string svg_line_chart(const Chart& chart);

// Final values per group, one row a group: a dot per run, the mean as a bar and mean +- sample
// standard deviation as a line, and the numbers at the right. An <svg> element like the line chart's.
struct DotRow {
  std::string group, colour;
  std::vector<std::pair<std::string, double>> runs;  // (label, value); non-finite values are left out
};
std::string svg_dot_chart(const std::string& title, const std::string& x_label, const std::vector<DotRow>& rows,
                          const std::string& empty_text);

// Bucket means down to at most `max_points` (steps of thousands of points would only blur; the
// mean of consecutive steps keeps the trend).
std::vector<XY> thin_points(const std::vector<XY>& points, size_t max_points);

std::string html_escape(const std::string& text);

}  // namespace orchard::distill
