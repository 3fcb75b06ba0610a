#include "distill/report.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/mapped_file.h"
#include "base/text_lines.h"

namespace orchard::distill {
namespace {

using json = nlohmann::json;

// A field that may be absent or null; otherwise a finite number.
std::optional<double> optional_number(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) fail(where, ": \"", key, "\" must be a number or null, not ", it->dump());
  const double v = it->get<double>();
  if (!std::isfinite(v)) fail(where, ": \"", key, "\" is not finite");
  return v;
}

// A field that must be there, a number or null (NaN): an evaluation gives null for a metric it has
// no rows for (SFT-only data has no top-k rows, so no KL).
double required_number_or_null(const json& object, const char* key, const std::string& where) {
  if (!object.contains(key)) fail(where, ": \"", key, "\" is missing");
  return optional_number(object, key, where).value_or(kNaN);
}

std::optional<int64_t> optional_count(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail(where, ": \"", key, "\" is too large");
  if (!it->is_number_integer() || it->get<int64_t>() < 0)
    fail(where, ": \"", key, "\" must be a non-negative integer, not ", it->dump());
  return it->get<int64_t>();
}

std::optional<std::string> optional_string(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) fail(where, ": \"", key, "\" must be a string, not ", it->dump());
  return it->get<std::string>();
}

struct LogEntry {
  std::optional<double> loss, eval_loss, agreement, kl, ce;
};

std::string fmt(double v, const char* format = "%.4g") {
  if (!std::isfinite(v)) return "-";
  char text[64];
  std::snprintf(text, sizeof text, format, v + 0.0);  // + 0.0: no "-0"
  return text;
}

std::string coord(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", v + 0.0);
  return text;
}

// Step 1, 2 or 5 x 10^e as (m, e), giving about `target` intervals over `span` > 0.
std::pair<int, int> nice_step_parts(double span, int target) {
  const double raw = span / std::max(target, 1);
  int e = static_cast<int>(std::floor(std::log10(raw)));
  const double f = raw / std::pow(10.0, e);
  int m = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  if (m == 10) {
    m = 1;
    ++e;
  }
  return {m, e};
}

// k * m * 10^e rounded once: the nearest double to the decimal value (exact powers of ten up to 10^22).
double scaled(int64_t k, int m, int e) {
  const double km = static_cast<double>(k) * m;
  if (e >= 0) return km * std::pow(10.0, e);
  return km / std::pow(10.0, -e);
}

// The colours of groups, in the order groups first appear (a palette readable on white and by most
// colour-blind readers when the groups are few).
const char* const kPalette[] = {"#1f6fb4", "#d1492e", "#2f9a3a", "#8e5bb8", "#e08a0b", "#17a2b0", "#7a5a3c", "#c2448f"};

// `text` cut to `max_chars` code points with an ellipsis, escaped, and when cut followed by the whole
// text as a tooltip: labels beside a plot have a fixed width, and a long one would leave the picture.
std::string fitted(const std::string& text, size_t max_chars) {
  size_t chars = 0, cut = std::string::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte
    if (chars == max_chars - 1) cut = i;
    ++chars;
  }
  if (chars <= max_chars) return html_escape(text);
  return html_escape(text.substr(0, cut)) + "\u2026<title>" + html_escape(text) + "</title>";
}

struct MetricOf {
  const char* title;
  const char* y_label;
  const char* empty;
  std::vector<Point> RunLog::*member;
  const char* caption;  // "" for none
};

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string group_of(const std::string& label) { return label.substr(0, label.find('/')); }

RunLog read_run_log(const std::string& dir_or_log_path, const std::string& label) {
  RunLog log;
  log.label = label;
  log.group = group_of(label);
  if (!file_exists(dir_or_log_path)) fail(dir_or_log_path, ": no such run folder or log (", label, ")");
  log.path =
      is_directory(dir_or_log_path) ? (std::filesystem::path(dir_or_log_path) / "log.jsonl").string() : dir_or_log_path;
  const std::string text = read_text_file(log.path, kMaxTextFileBytes);
  std::map<int64_t, LogEntry> entries;
  for_each_line(text, [&](const TextLine& line) {
    const std::string where = str_cat(log.path, ":", line.number);
    json j;
    try {
      j = parse_json(line.text, where);
    } catch (const Error& e) {
      // A run killed mid-write leaves a torn last line; what came before it is still the run.
      if (line.terminated) throw;
      log.warnings.push_back(str_cat(where, ": the last line is cut short (a run stopped mid-write?): skipped"));
      return;
    }
    ++log.lines;
    if (!j.is_object()) fail(where, ": not a JSON object");
    const std::optional<int64_t> step = optional_count(j, "step", where);
    if (!step) fail(where, ": \"step\" is missing");
    LogEntry entry;
    entry.loss = optional_number(j, "loss", where);
    entry.eval_loss = optional_number(j, "eval_loss", where);
    if (const auto it = j.find("eval"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) fail(where, ": \"eval\" must be an object or null, not ", it->dump());
      const std::string eval_where = where + ": \"eval\"";
      entry.agreement = optional_number(*it, "agreement", eval_where);
      entry.kl = optional_number(*it, "kl", eval_where);
      entry.ce = optional_number(*it, "ce", eval_where);
      optional_count(*it, "rows", eval_where);
    }
    entries[*step] = entry;  // a resumed run's later line for the same step wins
    log.last_step = std::max(log.last_step, *step);
  });
  for (const auto& [step, e] : entries) {
    if (e.loss) log.loss.push_back({step, *e.loss});
    if (e.eval_loss) log.eval_loss.push_back({step, *e.eval_loss});
    if (e.agreement) log.agreement.push_back({step, *e.agreement});
    if (e.kl) log.kl.push_back({step, *e.kl});
    if (e.ce) log.ce.push_back({step, *e.ce});
  }
  return log;
}

EvalResult read_eval(const std::string& path) {
  const json j = parse_json(read_text_file(path, kMaxTextFileBytes), path);
  if (!j.is_object()) fail(path, ": not a JSON object");
  EvalResult r;
  r.path = path;
  r.student = optional_string(j, "student", path).value_or("");
  r.data = optional_string(j, "data", path).value_or("");
  r.examples = optional_count(j, "examples", path).value_or(0);
  r.rows = optional_count(j, "rows", path).value_or(0);
  r.agreement = required_number_or_null(j, "agreement", path);
  r.kl = required_number_or_null(j, "kl", path);
  r.ce = required_number_or_null(j, "ce", path);
  if (const auto it = j.find("teacher_score"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(path, ": \"teacher_score\" must be an object or null, not ", it->dump());
    const std::string where = path + ": \"teacher_score\"";
    if (const double mean = required_number_or_null(*it, "mean_logprob_per_token", where); std::isfinite(mean))
      r.teacher_score = mean;
    r.teacher_score_tokens = optional_count(*it, "tokens", where);
  }
  r.teacher_self = optional_number(j, "teacher_self_logprob_per_token", path);
  return r;
}

RunSpec parse_run_spec(const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) fail("run \"", spec, "\": expected LABEL=DIR[:EVAL.json]");
  RunSpec r;
  r.label = spec.substr(0, eq);
  const std::string paths = spec.substr(eq + 1);
  const size_t colon = paths.rfind(':');
  r.dir = paths.substr(0, colon);
  if (colon != std::string::npos) r.eval = paths.substr(colon + 1);
  if (r.dir.empty() && r.eval.empty()) fail("run \"", spec, "\": neither a run folder nor an EVAL.json");
  if (colon != std::string::npos && r.eval.empty()) fail("run \"", spec, "\": nothing after ':' (EVAL.json)");
  return r;
}

Spread spread_of(const std::vector<double>& values) {
  Spread s;
  double sum = 0;
  for (const double v : values) {
    if (!std::isfinite(v)) continue;
    if (s.n == 0) s.min = s.max = v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
    sum += v;
    ++s.n;
  }
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n >= 2) {
    double sq = 0;
    for (const double v : values)
      if (std::isfinite(v)) sq += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(sq / (s.n - 1));
  }
  return s;
}

RunFinal final_metrics(const ReportRun& run) {
  RunFinal f;
  if (run.eval) {
    f.agreement = run.eval->agreement;
    f.kl = run.eval->kl;
    f.ce = run.eval->ce;
    f.teacher_score = run.eval->teacher_score.value_or(kNaN);
    f.source = run.eval->path;
    return f;
  }
  int64_t step = -1;
  const auto last = [&](const std::vector<Point>& points) {
    if (points.empty()) return kNaN;
    step = std::max(step, points.back().step);
    return points.back().value;
  };
  f.agreement = last(run.log.agreement);
  f.kl = last(run.log.kl);
  f.ce = last(run.log.ce);
  f.source = step >= 0 ? str_cat("log, step ", step) : "none";
  return f;
}

std::vector<GroupSummary> summarize(const ReportInput& input) {
  std::vector<GroupSummary> groups;
  for (size_t i = 0; i < input.runs.size(); ++i) {
    const std::string& name = input.runs[i].log.group;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const GroupSummary& g) { return g.group == name; });
    if (it == groups.end()) {
      groups.push_back({});
      groups.back().group = name;
      it = groups.end() - 1;
    }
    it->runs.push_back(i);
  }
  for (GroupSummary& g : groups) {
    std::vector<double> agreement, kl, ce, teacher;
    for (const size_t i : g.runs) {
      const RunFinal f = final_metrics(input.runs[i]);
      agreement.push_back(f.agreement);
      kl.push_back(f.kl);
      ce.push_back(f.ce);
      teacher.push_back(f.teacher_score);
    }
    g.agreement = spread_of(agreement);
    g.kl = spread_of(kl);
    g.ce = spread_of(ce);
    g.teacher_score = spread_of(teacher);
  }
  return groups;
}

std::vector<Comparison> compare_groups(const ReportInput& input) {
  const std::vector<GroupSummary> groups = summarize(input);
  std::vector<Comparison> out;
  if (groups.size() < 2) return out;
  struct Metric {
    const char* name;
    double RunFinal::*member;
    Spread GroupSummary::*spread;
    bool higher_is_better;
  };
  const Metric metrics[] = {{"agreement", &RunFinal::agreement, &GroupSummary::agreement, true},
                            {"KL", &RunFinal::kl, &GroupSummary::kl, false},
                            {"CE", &RunFinal::ce, &GroupSummary::ce, false},
                            {"teacher score", &RunFinal::teacher_score, &GroupSummary::teacher_score, true}};
  const auto name_in_group = [&](size_t run) {
    const std::string& label = input.runs[run].log.label;
    const size_t slash = label.find('/');
    return slash == std::string::npos ? std::string() : label.substr(slash + 1);
  };
  const GroupSummary& base = groups[0];
  for (size_t g = 1; g < groups.size(); ++g)
    for (const Metric& m : metrics) {
      Comparison c;
      c.group = groups[g].group;
      c.baseline = base.group;
      c.metric = m.name;
      c.mean_difference = (groups[g].*m.spread).mean - (base.*m.spread).mean;
      for (const size_t i : groups[g].runs)
        for (const size_t j : base.runs) {
          if (name_in_group(i).empty() || name_in_group(i) != name_in_group(j)) continue;
          const double a = final_metrics(input.runs[i]).*m.member, b = final_metrics(input.runs[j]).*m.member;
          if (!std::isfinite(a) || !std::isfinite(b)) continue;
          ++c.pairs;
          if (m.higher_is_better ? a > b : a < b) ++c.better;
        }
      if (std::isfinite(c.mean_difference) || c.pairs > 0) out.push_back(c);
    }
  return out;
}

namespace {

std::string spread_text(const Spread& s, size_t runs) {
  if (s.n == 0) return "-";
  const std::string of = static_cast<size_t>(s.n) < runs ? str_cat(" n=", s.n) : "";
  if (s.n == 1) return fmt(s.mean) + " (1 run)";
  return str_cat(fmt(s.mean), " +- ", fmt(s.sd), " [", fmt(s.min), ", ", fmt(s.max), "]", of);
}

// `runs`: the group's runs; fewer values than runs (a run without that metric) is said.
std::string spread_html(const Spread& s, size_t runs) {
  if (s.n == 0) return "<td class=\"none\">&ndash;</td>";
  const std::string of = static_cast<size_t>(s.n) < runs ? str_cat(" (", s.n, " of ", runs, " runs)") : "";
  if (s.n == 1) return "<td>" + fmt(s.mean) + "<br><span class=\"small\">1 run" + of + "</span></td>";
  return str_cat("<td>", fmt(s.mean), " &plusmn; ", fmt(s.sd), "<br><span class=\"small\">", fmt(s.min), " &ndash; ",
                 fmt(s.max), of, "</span></td>");
}

std::string number_cell(double v) {
  return std::isfinite(v) ? "<td>" + fmt(v) + "</td>" : std::string("<td class=\"none\">&ndash;</td>");
}

std::vector<XY> as_xy(const std::vector<Point>& points) {
  std::vector<XY> out;
  out.reserve(points.size());
  for (const Point& p : points) out.push_back({static_cast<double>(p.step), p.value});
  return out;
}

// The mean over the group's runs that have the metric, at the steps all of them have.
std::vector<XY> mean_curve(const std::vector<const std::vector<Point>*>& curves) {
  std::map<int64_t, std::pair<double, size_t>> at;
  for (const auto* c : curves)
    for (const Point& p : *c) {
      auto& [sum, count] = at[p.step];
      sum += p.value;
      ++count;
    }
  std::vector<XY> out;
  for (const auto& [step, sc] : at)
    if (sc.second == curves.size())
      out.push_back({static_cast<double>(step), sc.first / static_cast<double>(sc.second)});
  return out;
}

constexpr size_t kMaxPointsPerLine = 1000;

Chart metric_chart(const ReportInput& input, const std::vector<GroupSummary>& groups, const MetricOf& metric) {
  Chart chart;
  chart.title = metric.title;
  chart.x_label = "step";
  chart.y_label = metric.y_label;
  chart.empty_text = metric.empty;
  bool any_mean = false;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string colour = kPalette[g % std::size(kPalette)];
    std::vector<const std::vector<Point>*> curves;
    for (const size_t i : groups[g].runs)
      if (!(input.runs[i].log.*metric.member).empty()) curves.push_back(&(input.runs[i].log.*metric.member));
    if (curves.empty()) continue;
    for (const size_t i : groups[g].runs) {
      const std::vector<Point>& points = input.runs[i].log.*metric.member;
      if (points.empty()) continue;
      chart.series.push_back(
          {input.runs[i].log.label, colour, curves.size() == 1, thin_points(as_xy(points), kMaxPointsPerLine)});
    }
    if (curves.size() > 1) {
      std::vector<XY> mean = mean_curve(curves);
      if (!mean.empty()) {
        any_mean = true;
        chart.series.push_back({groups[g].group + " (mean of " + std::to_string(curves.size()) + ")", colour, true,
                                thin_points(mean, kMaxPointsPerLine)});
      }
    }
    chart.legend.push_back(
        {str_cat(groups[g].group, " (", curves.size(), curves.size() == 1 ? " run)" : " runs)"), colour});
  }
  if (any_mean) {
    chart.legend.push_back({"thin: one run", ""});
    chart.legend.push_back({"bold: the group's mean", ""});
  }
  return chart;
}

}  // namespace

std::string summary_text(const ReportInput& input) {
  const std::vector<GroupSummary> groups = summarize(input);
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-16s %4s  %-34s %-34s %-34s %s\n", "group", "runs", "agreement", "KL", "CE",
                "teacher score");
  out += line;
  for (const GroupSummary& g : groups) {
    std::snprintf(line, sizeof line, "%-16s %4zu  %-34s %-34s %-34s %s\n", g.group.c_str(), g.runs.size(),
                  spread_text(g.agreement, g.runs.size()).c_str(), spread_text(g.kl, g.runs.size()).c_str(),
                  spread_text(g.ce, g.runs.size()).c_str(), spread_text(g.teacher_score, g.runs.size()).c_str());
    out += line;
  }
  for (const Comparison& c : compare_groups(input)) {
    std::snprintf(line, sizeof line, "%s vs %s: %s mean difference %s", c.group.c_str(), c.baseline.c_str(),
                  c.metric.c_str(), fmt(c.mean_difference, "%+.4g").c_str());
    out += line;
    if (c.pairs > 0) out += str_cat(", better on ", c.better, " of ", c.pairs, " paired runs");
    out += '\n';
  }
  return out;
}

std::vector<XY> thin_points(const std::vector<XY>& points, size_t max_points) {
  if (max_points == 0 || points.size() <= max_points) return points;
  const size_t bucket = (points.size() + max_points - 1) / max_points;
  std::vector<XY> out;
  for (size_t at = 0; at < points.size(); at += bucket) {
    const size_t end = std::min(points.size(), at + bucket);
    XY sum;
    for (size_t i = at; i < end; ++i) {
      sum.x += points[i].x;
      sum.y += points[i].y;
    }
    const double n = static_cast<double>(end - at);
    out.push_back({sum.x / n, sum.y / n});
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (lo > hi) std::swap(lo, hi);
  if (lo == hi) return {lo};
  // Spans a double cannot divide into steps (overflowing, vanishing, or far below the values'
  // own size) get their two ends alone rather than a cast out of range.
  const double raw = (hi - lo) / std::max(target, 1);
  if (!std::isfinite(raw) || !(raw >= 1e-300) || std::max(std::fabs(lo), std::fabs(hi)) / raw > 1e12) return {lo, hi};
  const auto [m, e] = nice_step_parts(hi - lo, target);
  const double step = scaled(1, m, e);
  const double slack = 1e-9;
  const int64_t first = static_cast<int64_t>(std::ceil(lo / step - slack));
  const int64_t last = static_cast<int64_t>(std::floor(hi / step + slack));
  std::vector<double> ticks;
  for (int64_t k = first; k <= last && ticks.size() < 100; ++k) ticks.push_back(scaled(k, m, e) + 0.0);
  return ticks;
}

std::string tick_label(double value, double step) {
  int decimals = 0;
  if (step > 0 && std::isfinite(step))
    decimals = std::clamp(-static_cast<int>(std::floor(std::log10(step) + 1e-9)), 0, 15);
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value + 0.0);
  return text;
}

std::string svg_line_chart(const Chart& chart) {
  using G = ChartGeometry;
  std::string s = str_cat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", G::width, "\" height=\"", G::height,
                          "\" viewBox=\"0 0 ", G::width, " ", G::height, "\" role=\"img\" aria-label=\"",
                          html_escape(chart.title), "\">\n");
  s += str_cat("<rect x=\"0\" y=\"0\" width=\"", G::width, "\" height=\"", G::height, "\" fill=\"#ffffff\"/>\n");
  s += str_cat("<text x=\"", G::left, "\" y=\"24\" class=\"title\">", html_escape(chart.title), "</text>\n");
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const Series& series : chart.series)
    for (const XY& p : series.points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
      x_lo = std::min(x_lo, p.x);
      x_hi = std::max(x_hi, p.x);
      y_lo = std::min(y_lo, p.y);
      y_hi = std::max(y_hi, p.y);
    }
  const double frame_left = G::left - G::pad, frame_right = G::right + G::pad, frame_top = G::top - G::pad,
               frame_bottom = G::bottom + G::pad;
  if (!(x_lo <= x_hi)) {
    s += str_cat("<rect x=\"", frame_left, "\" y=\"", frame_top, "\" width=\"", frame_right - frame_left,
                 "\" height=\"", frame_bottom - frame_top, "\" fill=\"#f6f6f6\" stroke=\"#cccccc\"/>\n");
    s += str_cat("<text x=\"", coord((G::left + G::right) / 2), "\" y=\"", coord((G::top + G::bottom) / 2),
                 "\" text-anchor=\"middle\" class=\"empty\">", html_escape(chart.empty_text), "</text>\n</svg>\n");
    return s;
  }
  if (!std::isfinite(x_hi - x_lo) || !std::isfinite(y_hi - y_lo)) {
    s += str_cat("<text x=\"", coord((G::left + G::right) / 2), "\" y=\"", coord((G::top + G::bottom) / 2),
                 "\" text-anchor=\"middle\" class=\"empty\">values too far apart to draw</text>\n</svg>\n");
    return s;
  }
  // One value on an axis: widen it so that the value sits in the middle.
  if (x_lo == x_hi) {
    x_lo -= 1;
    x_hi += 1;
  }
  if (y_lo == y_hi) {
    const double pad = y_lo == 0 ? 1 : std::fabs(y_lo) * 0.05;
    y_lo -= pad;
    y_hi += pad;
  }
  const auto px = [&](double x) { return G::left + (x - x_lo) / (x_hi - x_lo) * (G::right - G::left); };
  const auto py = [&](double y) { return G::bottom - (y - y_lo) / (y_hi - y_lo) * (G::bottom - G::top); };

  // Grid and ticks.
  const std::vector<double> xt = nice_ticks(x_lo, x_hi, 6), yt = nice_ticks(y_lo, y_hi, 5);
  const double x_step = xt.size() > 1 ? xt[1] - xt[0] : 0, y_step = yt.size() > 1 ? yt[1] - yt[0] : 0;
  s += "<g class=\"grid\">\n";
  for (const double t : yt)
    s += str_cat("<line x1=\"", coord(frame_left), "\" y1=\"", coord(py(t)), "\" x2=\"", coord(frame_right), "\" y2=\"",
                 coord(py(t)), "\"/>\n");
  for (const double t : xt)
    s += str_cat("<line x1=\"", coord(px(t)), "\" y1=\"", coord(frame_top), "\" x2=\"", coord(px(t)), "\" y2=\"",
                 coord(frame_bottom), "\"/>\n");
  s += "</g>\n<g class=\"ticks\">\n";
  for (const double t : yt)
    s += str_cat("<text x=\"", coord(frame_left - 6), "\" y=\"", coord(py(t) + 4), "\" text-anchor=\"end\">",
                 tick_label(t, y_step), "</text>\n");
  for (const double t : xt)
    s += str_cat("<text x=\"", coord(px(t)), "\" y=\"", coord(frame_bottom + 16), "\" text-anchor=\"middle\">",
                 tick_label(t, x_step), "</text>\n");
  s += "</g>\n";
  s += str_cat("<rect x=\"", frame_left, "\" y=\"", frame_top, "\" width=\"", frame_right - frame_left, "\" height=\"",
               frame_bottom - frame_top, "\" fill=\"none\" stroke=\"#444444\"/>\n");
  s += str_cat("<text x=\"", coord((G::left + G::right) / 2), "\" y=\"", coord(frame_bottom + 36),
               "\" text-anchor=\"middle\" class=\"axis\">", html_escape(chart.x_label), "</text>\n");
  s += str_cat("<text x=\"18\" y=\"", coord((G::top + G::bottom) / 2), "\" text-anchor=\"middle\" class=\"axis\" ",
               "transform=\"rotate(-90 18 ", coord((G::top + G::bottom) / 2), ")\">", html_escape(chart.y_label),
               "</text>\n");

  // The thin lines first, so that the bold means lie on top.
  for (const bool bold : {false, true})
    for (const Series& series : chart.series) {
      if (series.bold != bold || series.points.empty()) continue;
      const std::string style = str_cat("stroke=\"", html_escape(series.colour), "\" stroke-width=\"",
                                        bold ? "2.5" : "1.2", "\" stroke-opacity=\"", bold ? "1" : "0.45", "\"");
      if (series.points.size() == 1) {
        s += str_cat("<circle class=\"series\" cx=\"", coord(px(series.points[0].x)), "\" cy=\"",
                     coord(py(series.points[0].y)), "\" r=\"3\" fill=\"", html_escape(series.colour), "\" ", style,
                     "><title>", html_escape(series.name), "</title></circle>\n");
        continue;
      }
      s += "<polyline class=\"series\" fill=\"none\" stroke-linejoin=\"round\" " + style + " points=\"";
      for (size_t i = 0; i < series.points.size(); ++i) {
        if (i) s += ' ';
        s += coord(px(series.points[i].x)) + "," + coord(py(series.points[i].y));
      }
      s += "\"><title>" + html_escape(series.name) + "</title></polyline>\n";
    }

  // The legend, right of the plot.
  double ly = frame_top + 8;
  for (const LegendEntry& entry : chart.legend) {
    if (!entry.colour.empty()) {
      s += str_cat("<line x1=\"", coord(frame_right + 14), "\" y1=\"", coord(ly), "\" x2=\"", coord(frame_right + 38),
                   "\" y2=\"", coord(ly), "\" stroke=\"", html_escape(entry.colour), "\" stroke-width=\"3\"/>\n");
      s += str_cat("<text x=\"", coord(frame_right + 44), "\" y=\"", coord(ly + 4), "\" class=\"legend\">",
                   fitted(entry.text, 22), "</text>\n");
    } else {
      s += str_cat("<text x=\"", coord(frame_right + 14), "\" y=\"", coord(ly + 4), "\" class=\"note\">",
                   fitted(entry.text, 26), "</text>\n");
    }
    ly += 20;
  }
  s += "</svg>\n";
  return s;
}

std::string svg_dot_chart(const std::string& title, const std::string& x_label, const std::vector<DotRow>& rows,
                          const std::string& empty_text) {
  // Rows of 34 px under a title; group names left of the plot, the numbers right of it.
  constexpr double width = 900, left = 150, right = 640, top = 44, row = 34, pad = 8;
  const double height = top + row * static_cast<double>(std::max<size_t>(rows.size(), 1)) + 50;
  const double bottom = top + row * static_cast<double>(std::max<size_t>(rows.size(), 1));
  std::string s =
      str_cat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", width, "\" height=\"", height, "\" viewBox=\"0 0 ",
              width, " ", height, "\" role=\"img\" aria-label=\"", html_escape(title),
              "\">\n<rect x=\"0\" y=\"0\" width=\"", width, "\" height=\"", height, "\" fill=\"#ffffff\"/>\n");
  s += str_cat("<text x=\"", left - pad, "\" y=\"24\" class=\"title\">", html_escape(title), "</text>\n");
  std::vector<Spread> spreads;
  double lo = INFINITY, hi = -INFINITY;
  for (const DotRow& r : rows) {
    std::vector<double> values;
    for (const auto& [label, v] : r.runs) values.push_back(v);
    spreads.push_back(spread_of(values));
    const Spread& sp = spreads.back();
    if (sp.n == 0) continue;
    lo = std::min(lo, sp.min);
    hi = std::max(hi, sp.max);
    if (std::isfinite(sp.sd)) {
      lo = std::min(lo, sp.mean - sp.sd);
      hi = std::max(hi, sp.mean + sp.sd);
    }
  }
  if (!(lo <= hi) || !std::isfinite(hi - lo)) {
    s += str_cat("<text x=\"", coord((left + right) / 2), "\" y=\"", coord((top + bottom) / 2),
                 "\" text-anchor=\"middle\" class=\"empty\">",
                 html_escape(lo <= hi ? std::string("values too far apart to draw") : empty_text), "</text>\n</svg>\n");
    return s;
  }
  if (lo == hi) {
    const double widen = lo == 0 ? 1 : std::fabs(lo) * 0.05;
    lo -= widen;
    hi += widen;
  }
  const auto px = [&](double x) { return left + (x - lo) / (hi - lo) * (right - left); };
  const std::vector<double> ticks = nice_ticks(lo, hi, 5);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 0;
  s += "<g class=\"grid\">\n";
  for (const double t : ticks)
    s += str_cat("<line x1=\"", coord(px(t)), "\" y1=\"", coord(top), "\" x2=\"", coord(px(t)), "\" y2=\"",
                 coord(bottom), "\"/>\n");
  s += "</g>\n";
  for (const double t : ticks)
    s += str_cat("<text x=\"", coord(px(t)), "\" y=\"", coord(bottom + 16), "\" text-anchor=\"middle\">",
                 tick_label(t, step), "</text>\n");
  s += str_cat("<rect x=\"", coord(left - pad), "\" y=\"", coord(top), "\" width=\"", coord(right - left + 2 * pad),
               "\" height=\"", coord(bottom - top), "\" fill=\"none\" stroke=\"#444444\"/>\n");
  s += str_cat("<text x=\"", coord((left + right) / 2), "\" y=\"", coord(bottom + 36),
               "\" text-anchor=\"middle\" class=\"axis\">", html_escape(x_label), "</text>\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const DotRow& r = rows[i];
    const Spread& sp = spreads[i];
    const double y = top + row * (static_cast<double>(i) + 0.5);
    const std::string colour = html_escape(r.colour);
    s += str_cat("<text x=\"", coord(left - pad - 8), "\" y=\"", coord(y + 4), "\" text-anchor=\"end\">",
                 fitted(r.group, 18), "</text>\n");
    if (sp.n == 0) {
      s += str_cat("<text x=\"", coord(right + pad + 10), "\" y=\"", coord(y + 4),
                   "\" class=\"note\">no value</text>\n");
      continue;
    }
    if (std::isfinite(sp.sd))
      s += str_cat("<line class=\"sd\" x1=\"", coord(px(sp.mean - sp.sd)), "\" y1=\"", coord(y), "\" x2=\"",
                   coord(px(sp.mean + sp.sd)), "\" y2=\"", coord(y), "\" stroke=\"", colour,
                   "\" stroke-width=\"2\"/>\n");
    s += str_cat("<line class=\"mean\" x1=\"", coord(px(sp.mean)), "\" y1=\"", coord(y - 9), "\" x2=\"",
                 coord(px(sp.mean)), "\" y2=\"", coord(y + 9), "\" stroke=\"", colour, "\" stroke-width=\"3\"/>\n");
    for (const auto& [label, v] : r.runs) {
      if (!std::isfinite(v)) continue;
      s += str_cat("<circle class=\"run\" cx=\"", coord(px(v)), "\" cy=\"", coord(y), "\" r=\"4.5\" fill=\"", colour,
                   "\" fill-opacity=\"0.55\" stroke=\"", colour, "\"><title>", html_escape(label), ": ", fmt(v),
                   "</title></circle>\n");
    }
    s += str_cat("<text x=\"", coord(right + pad + 10), "\" y=\"", coord(y + 4), "\">", fmt(sp.mean),
                 std::isfinite(sp.sd) ? " \u00b1 " + fmt(sp.sd) : std::string(), " (n=", sp.n, ")</text>\n");
  }
  s += "</svg>\n";
  return s;
}

std::string render_report(const ReportInput& input) {
  const std::vector<GroupSummary> groups = summarize(input);
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + html_escape(input.title) +
       "</title>\n<style>\n"
       "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;margin:24px auto;"
       "max-width:980px;padding:0 12px}\n"
       "h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;margin-top:28px;border-bottom:1px solid #ddd}\n"
       "code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.85em}\n"
       "pre.cmd{background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}\n"
       "table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}\n"
       "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}\n"
       "th{background:#f0f0f0}td.label,th.label{text-align:left}td.none{color:#999;text-align:center}\n"
       ".small{font-size:0.8em;color:#666}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;"
       "vertical-align:middle}\n.warning{color:#a33}\nfigure{margin:16px 0}\n"
       "svg text{font-family:system-ui,Helvetica,Arial,sans-serif;font-size:12px;fill:#222}\n"
       "svg text.title{font-size:15px;font-weight:600}svg text.axis{font-size:13px}svg text.note{fill:#666}\n"
       "svg text.empty{font-size:14px;fill:#888}svg .grid line{stroke:#e4e4e4;stroke-width:1}\n"
       "</style>\n</head>\n<body>\n";
  h += "<h1>" + html_escape(input.title) + "</h1>\n";
  if (!input.command_line.empty()) h += "<pre class=\"cmd\">" + html_escape(input.command_line) + "</pre>\n";

  h += "<h2>Summary by group</h2>\n";
  h += "<p class=\"small\">Final held-out metrics per run (from the run's EVAL.json when given, else its log's last "
       "evaluation): mean &plusmn; sample standard deviation over the group's runs, and min &ndash; max beneath. "
       "Agreement: higher is better; KL and CE: lower is better; teacher score (the teacher's mean log-probability "
       "per token of the student's answers): higher is better.</p>\n";
  h += "<table>\n<tr><th class=\"label\">group</th><th>runs</th><th>agreement</th><th>KL</th><th>CE</th>"
       "<th>teacher score</th></tr>\n";
  for (size_t g = 0; g < groups.size(); ++g) {
    h +=
        str_cat("<tr><td class=\"label\"><span class=\"swatch\" style=\"background:", kPalette[g % std::size(kPalette)],
                "\"></span>", html_escape(groups[g].group), "</td><td>", groups[g].runs.size(), "</td>");
    const size_t n = groups[g].runs.size();
    h += spread_html(groups[g].agreement, n) + spread_html(groups[g].kl, n) + spread_html(groups[g].ce, n) +
         spread_html(groups[g].teacher_score, n) + "</tr>\n";
  }
  h += "</table>\n";
  if (const std::vector<Comparison> comparisons = compare_groups(input); !comparisons.empty()) {
    h += "<p class=\"small\">Each group against the first, <b>" + html_escape(comparisons[0].baseline) +
         "</b>: the difference of the means, and on how many pairs of runs with the same name after the group "
         "(&ldquo;kd/seed1&rdquo; with &ldquo;sft/seed1&rdquo;) the group did better.</p>\n";
    h += "<table>\n<tr><th class=\"label\">group</th><th class=\"label\">metric</th><th>mean difference</th>"
         "<th>better on</th></tr>\n";
    for (const Comparison& c : comparisons) {
      h += "<tr><td class=\"label\">" + html_escape(c.group) + "</td><td class=\"label\">" + html_escape(c.metric) +
           "</td>" + number_cell(c.mean_difference);
      h += c.pairs > 0 ? str_cat("<td>", c.better, " of ", c.pairs, " pairs</td>")
                       : std::string("<td class=\"none\">&ndash;</td>");
      h += "</tr>\n";
    }
    h += "</table>\n";
  }
  struct Final {
    const char* title;
    const char* x_label;
    double RunFinal::*member;
    bool always;  // drawn (or said missing) even when no run has it
  };
  const Final finals[] = {
      {"Final held-out agreement (higher is better)", "agreement (top-1)", &RunFinal::agreement, true},
      {"Final held-out KL (lower is better)", "KL (nats/token)", &RunFinal::kl, true},
      {"Final held-out CE (lower is better)", "CE (nats/token)", &RunFinal::ce, true},
      {"Teacher score of the student's answers (higher is better)", "mean teacher log-probability per token",
       &RunFinal::teacher_score, false},
  };
  for (const Final& metric : finals) {
    std::vector<DotRow> rows;
    bool any = false;
    for (size_t g = 0; g < groups.size(); ++g) {
      DotRow row{groups[g].group, kPalette[g % std::size(kPalette)], {}};
      for (const size_t i : groups[g].runs) {
        const double v = final_metrics(input.runs[i]).*metric.member;
        if (std::isfinite(v)) any = true;
        row.runs.push_back({input.runs[i].log.label, v});
      }
      rows.push_back(std::move(row));
    }
    if (!any && !metric.always) continue;
    h += "<figure>\n" + svg_dot_chart(metric.title, metric.x_label, rows, "no run has this metric") + "</figure>\n";
  }

  h += "<h2>Runs</h2>\n<table>\n<tr><th class=\"label\">run</th><th>last step</th><th>last loss</th>"
       "<th>last eval loss</th><th>agreement</th><th>KL</th><th>CE</th><th>teacher score</th>"
       "<th>teacher self</th><th class=\"label\">final metrics from</th></tr>\n";
  for (const ReportRun& run : input.runs) {
    const RunFinal f = final_metrics(run);
    h += "<tr><td class=\"label\">" + html_escape(run.log.label) + "</td>";
    h += run.log.last_step >= 0 ? str_cat("<td>", run.log.last_step, "</td>")
                                : std::string("<td class=\"none\">&ndash;</td>");
    h += number_cell(run.log.loss.empty() ? kNaN : run.log.loss.back().value);
    h += number_cell(run.log.eval_loss.empty() ? kNaN : run.log.eval_loss.back().value);
    h += number_cell(f.agreement) + number_cell(f.kl) + number_cell(f.ce) + number_cell(f.teacher_score);
    h += number_cell(run.eval && run.eval->teacher_self ? *run.eval->teacher_self : kNaN);
    h += "<td class=\"label small\">" + html_escape(f.source) + "</td></tr>\n";
  }
  h += "</table>\n";
  std::vector<std::string> warnings;
  for (const ReportRun& run : input.runs) {
    for (const std::string& w : run.log.warnings) warnings.push_back(run.log.label + ": " + w);
    if (!run.log.path.empty() && run.log.lines == 0)
      warnings.push_back(run.log.label + ": " + run.log.path + " has no line");
  }
  if (!warnings.empty()) {
    h += "<ul class=\"warning\">\n";
    for (const std::string& w : warnings) h += "<li>" + html_escape(w) + "</li>\n";
    h += "</ul>\n";
  }

  h += "<h2>Curves</h2>\n";
  const MetricOf metrics[] = {
      {"Training loss over steps", "training loss", "no training loss in the logs", &RunLog::loss,
       "Each run's own objective: an SFT run's cross-entropy and a KD run's mix of cross-entropy and KD are not the "
       "same quantity; compare groups on the held-out charts."},
      {"Held-out agreement with the teacher over steps", "agreement (top-1)", "no held-out agreement in the logs",
       &RunLog::agreement, ""},
      {"Held-out KL(teacher || student) over steps", "KL (nats/token)", "no held-out KL in the logs", &RunLog::kl, ""},
      {"Held-out cross-entropy over steps", "CE (nats/token)", "no held-out CE in the logs", &RunLog::ce,
       "The student's cross-entropy on the teacher's answers."},
      {"Held-out loss (eval_loss) over steps", "eval loss", "no eval_loss in the logs", &RunLog::eval_loss,
       "The trainer's own loss on its --eval data."},
  };
  for (const MetricOf& metric : metrics) {
    h += "<figure>\n" + svg_line_chart(metric_chart(input, groups, metric));
    if (*metric.caption) h += str_cat("<figcaption class=\"small\">", html_escape(metric.caption), "</figcaption>\n");
    h += "</figure>\n";
  }
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace orchard::distill
