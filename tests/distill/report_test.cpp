// orchard distill report (src/distill/report.h): the logs and evaluations read, the group statistics
// against hand-computed numbers, the page's shape (closed <svg>s, no script, escaped labels), the
// chart's mapping of data to the plot area, and nice tick values.
#include "distill/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "cli/cli_test_support.h"
#include "orchard/error.h"
#include "temp_dir.h"

namespace orchard::distill {
namespace {

using test::TempDir;

// The message of the orchard::Error that `f` throws; "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::string make_run(const TempDir& dir, const std::string& name, const std::string& log) {
  std::filesystem::create_directories(dir.file(name));
  dir.write(name + "/log.jsonl", log);
  return dir.file(name);
}

TEST(DistillReport, ReadsLogAndTheLaterLineOfAStepWins) {
  TempDir dir;
  const std::string run =
      make_run(dir, "run",
               "{\"step\":1,\"loss\":2.5,\"lr\":0.001,\"grad_norm\":1.2,\"tokens\":100,\"tokens_per_s\":50}\n"
               "{\"step\":2,\"loss\":2.0}\n"
               "{\"step\":2,\"loss\":1.8,\"eval_loss\":1.9,\"eval\":{\"agreement\":0.5,\"kl\":0.7,"
               "\"ce\":1.95,\"rows\":100}}\n"
               "{\"step\":3,\"loss\":null,\"skipped\":true,\"reason\":\"a gradient is not finite\"}\n"
               "\n"
               "{\"step\":1,\"loss\":2.4}\r\n"  // a resumed run's line, with a CRLF
               "{\"step\":4,\"loss\":1.5,\"eval_loss\":null,\"eval\":null}\n");
  const RunLog log = read_run_log(run, "kd/seed1");
  EXPECT_EQ(log.label, "kd/seed1");
  EXPECT_EQ(log.group, "kd");
  EXPECT_EQ(log.lines, 6);
  EXPECT_EQ(log.last_step, 4);
  EXPECT_TRUE(log.warnings.empty());
  ASSERT_EQ(log.loss.size(), 3u);
  EXPECT_EQ(log.loss[0].step, 1);
  EXPECT_EQ(log.loss[0].value, 2.4);
  EXPECT_EQ(log.loss[1].step, 2);
  EXPECT_EQ(log.loss[1].value, 1.8);
  EXPECT_EQ(log.loss[2].step, 4);
  EXPECT_EQ(log.loss[2].value, 1.5);
  ASSERT_EQ(log.eval_loss.size(), 1u);
  EXPECT_EQ(log.eval_loss[0].value, 1.9);
  ASSERT_EQ(log.agreement.size(), 1u);
  EXPECT_EQ(log.agreement[0].step, 2);
  EXPECT_EQ(log.agreement[0].value, 0.5);
  ASSERT_EQ(log.kl.size(), 1u);
  EXPECT_EQ(log.kl[0].value, 0.7);
  ASSERT_EQ(log.ce.size(), 1u);
  EXPECT_EQ(log.ce[0].value, 1.95);
  // The file itself, not its folder, reads the same.
  EXPECT_EQ(read_run_log(run + "/log.jsonl", "x").loss.size(), 3u);
}

TEST(DistillReport, TornLastLineIsSkippedWithAWarning) {
  TempDir dir;
  const std::string run =
      make_run(dir, "run", "{\"step\":1,\"loss\":2.5}\n{\"step\":2,\"loss\":2.1}\n{\"step\":3,\"lo");
  const RunLog log = read_run_log(run, "a");
  ASSERT_EQ(log.loss.size(), 2u);
  EXPECT_EQ(log.loss[1].value, 2.1);
  ASSERT_EQ(log.warnings.size(), 1u);
  EXPECT_NE(log.warnings[0].find("log.jsonl:3"), std::string::npos) << log.warnings[0];
  // The same torn text followed by more lines is not a killed run's end but a broken log.
  make_run(dir, "run2", "{\"step\":1,\"loss\":2.5}\n{\"step\":3,\"lo\n{\"step\":4,\"loss\":2}\n");
  const std::string e = error_of([&] { read_run_log(dir.file("run2"), "a"); });
  EXPECT_NE(e.find("run2/log.jsonl:2:"), std::string::npos) << e;
}

TEST(DistillReport, MalformedLogLinesNameFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {"{\"loss\":1}", "\"step\" is missing"},
      {"{\"step\":-1,\"loss\":1}", "\"step\" must be a non-negative integer"},
      {"{\"step\":1.5,\"loss\":1}", "\"step\" must be a non-negative integer"},
      {"{\"step\":\"3\",\"loss\":1}", "\"step\" must be a non-negative integer"},
      {"{\"step\":18446744073709551615,\"loss\":1}", "\"step\" is too large"},
      {"{\"step\":3,\"loss\":\"1\"}", "\"loss\" must be a number or null"},
      {"{\"step\":3,\"loss\":1,\"eval_loss\":true}", "\"eval_loss\" must be a number or null"},
      {"{\"step\":3,\"loss\":1,\"eval\":[1]}", "\"eval\" must be an object or null"},
      {"{\"step\":3,\"loss\":1,\"eval\":{\"kl\":\"x\"}}", "\"eval\": \"kl\" must be a number or null"},
      {"{\"step\":3,\"loss\":1,\"eval\":{\"rows\":-2}}", "\"rows\" must be a non-negative integer"},
      {"{\"step\":3,\"loss\":1e999}", "not valid JSON"},
      {std::string(100000, '['), "nested more than"},
  };
  TempDir dir;
  for (const auto& [line, why] : cases) {
    const std::string run = make_run(dir, "run", "{\"step\":1,\"loss\":2}\n" + line + "\n{\"step\":9,\"loss\":1}\n");
    const std::string e = error_of([&] { read_run_log(run, "a"); });
    EXPECT_NE(e.find("run/log.jsonl:2: "), std::string::npos) << line.substr(0, 60) << " -> " << e;
    EXPECT_NE(e.find(why), std::string::npos) << line.substr(0, 60) << " -> " << e;
  }
  EXPECT_NE(error_of([&] { read_run_log(dir.file("absent"), "a"); }).find("absent: no such run folder"),
            std::string::npos);
  std::filesystem::create_directories(dir.file("empty"));  // a folder without log.jsonl
  EXPECT_NE(error_of([&] { read_run_log(dir.file("empty"), "a"); }).find("empty/log.jsonl"), std::string::npos);
  EXPECT_NE(error_of([&] { read_run_log("/dev/zero", "a"); }), "");
}

TEST(DistillReport, ReadsEvalAndRefusesBadOnes) {
  TempDir dir;
  const std::string good = dir.write(
      "eval.json",
      "{\"student\":\"s.gguf\",\"data\":\"d.jsonl\",\"examples\":12,\"rows\":3400,\"agreement\":0.61,\"kl\":0.42,"
      "\"ce\":2.25,\"per_example\":{\"kl\":[0.4,0.44],\"ce\":[2.2,2.3]},"
      "\"teacher_score\":{\"mean_logprob_per_token\":-1.25,\"tokens\":800},\"teacher_self_logprob_per_token\":-0.5}");
  const EvalResult r = read_eval(good);
  EXPECT_EQ(r.student, "s.gguf");
  EXPECT_EQ(r.examples, 12);
  EXPECT_EQ(r.rows, 3400);
  EXPECT_EQ(r.agreement, 0.61);
  EXPECT_EQ(r.kl, 0.42);
  EXPECT_EQ(r.ce, 2.25);
  ASSERT_TRUE(r.teacher_score.has_value());
  EXPECT_EQ(*r.teacher_score, -1.25);
  EXPECT_EQ(r.teacher_score_tokens.value_or(0), 800);
  EXPECT_EQ(r.teacher_self.value_or(0), -0.5);
  const EvalResult plain = read_eval(dir.write("plain.json", "{\"agreement\":0.5,\"kl\":1,\"ce\":2}"));
  EXPECT_FALSE(plain.teacher_score.has_value());
  EXPECT_FALSE(plain.teacher_self.has_value());

  // null metrics (no rows of that kind in the held-out data) and a null teacher score are no value.
  const EvalResult nulls =
      read_eval(dir.write("nulls.json",
                          "{\"agreement\":0.5,\"kl\":null,\"ce\":2,\"teacher_score\":{\"mean_logprob_per_token\":null,"
                          "\"tokens\":0},\"teacher_self_logprob_per_token\":null}"));
  EXPECT_EQ(nulls.agreement, 0.5);
  EXPECT_TRUE(std::isnan(nulls.kl));
  EXPECT_EQ(nulls.ce, 2);
  EXPECT_FALSE(nulls.teacher_score.has_value());
  EXPECT_FALSE(nulls.teacher_self.has_value());

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"kl\":1,\"ce\":2}", "\"agreement\" is missing"},
      {"{\"agreement\":\"0.5\",\"kl\":1,\"ce\":2}", "\"agreement\" must be a number"},
      {"{\"agreement\":0.5,\"kl\":1,\"ce\":2,\"teacher_score\":3}", "\"teacher_score\" must be an object"},
      {"{\"agreement\":0.5,\"kl\":1,\"ce\":2,\"teacher_score\":{}}", "\"mean_logprob_per_token\" is missing"},
      {"{\"agreement\":0.5,\"kl\":1,\"ce\":2,\"examples\":-1}", "\"examples\" must be a non-negative integer"},
      {"{\"agreement\":0.5,\"kl\":1,\"ce\":2,\"student\":7}", "\"student\" must be a string"},
      {"[]", "not a JSON object"},
      {"{", "not valid JSON"},
  };
  for (const auto& [text, why] : bad) {
    const std::string path = dir.write("bad.json", text);
    const std::string e = error_of([&] { read_eval(path); });
    EXPECT_NE(e.find(path), std::string::npos) << text << " -> " << e;
    EXPECT_NE(e.find(why), std::string::npos) << text << " -> " << e;
  }
}

TEST(DistillReport, RunSpecs) {
  RunSpec s = parse_run_spec("sft/seed1=runs/a:evals/a.json");
  EXPECT_EQ(s.label, "sft/seed1");
  EXPECT_EQ(s.dir, "runs/a");
  EXPECT_EQ(s.eval, "evals/a.json");
  s = parse_run_spec("kd=runs/b");
  EXPECT_EQ(s.dir, "runs/b");
  EXPECT_EQ(s.eval, "");
  s = parse_run_spec("kd=:e.json");
  EXPECT_EQ(s.dir, "");
  EXPECT_EQ(s.eval, "e.json");
  EXPECT_NE(error_of([] { parse_run_spec("=runs/a"); }), "");
  EXPECT_NE(error_of([] { parse_run_spec("runs/a"); }), "");
  EXPECT_NE(error_of([] { parse_run_spec("x="); }), "");
  EXPECT_NE(error_of([] { parse_run_spec("x=runs/a:"); }), "");
  EXPECT_EQ(group_of("sft/seed1/x"), "sft");
  EXPECT_EQ(group_of("alone"), "alone");
}

TEST(DistillReport, SpreadOfHandComputedValues) {
  const Spread s = spread_of({0.60, 0.64, 0.71});
  EXPECT_EQ(s.n, 3);
  EXPECT_NEAR(s.mean, 0.65, 1e-12);
  EXPECT_EQ(s.min, 0.60);
  EXPECT_EQ(s.max, 0.71);
  // Deviations -0.05, -0.01, 0.06: squares sum to 0.0062, over n - 1 = 2.
  EXPECT_NEAR(s.sd, std::sqrt(0.0031), 1e-12);
  const Spread one = spread_of({2.0, NAN});
  EXPECT_EQ(one.n, 1);
  EXPECT_EQ(one.mean, 2.0);
  EXPECT_TRUE(std::isnan(one.sd));
  EXPECT_EQ(spread_of({}).n, 0);
}

// Three SFT runs known by their EVAL.json files, and two KD runs: one by its log's last evaluation,
// one by its EVAL.json (which wins over its log).
ReportInput sample_input(const TempDir& dir, const std::string& odd_label = "kd/seed2") {
  ReportInput in;
  in.title = "SFT <vs> KD";
  in.command_line = "orchard distill report --run 'a&b'";
  const double sft_agreement[] = {0.60, 0.64, 0.71}, sft_kl[] = {0.9, 1.0, 1.4}, sft_ce[] = {2.0, 2.1, 2.3};
  for (int i = 0; i < 3; ++i) {
    std::string log;
    for (int step = 0; step <= 40; step += 1) {
      log += "{\"step\":" + std::to_string(step) + ",\"loss\":" + std::to_string(3.0 - step * 0.02 - i * 0.1);
      if (step % 10 == 0)
        log += ",\"eval_loss\":" + std::to_string(2.9 - step * 0.01) +
               ",\"eval\":{\"agreement\":" + std::to_string(0.3 + step * 0.005 + i * 0.01) +
               ",\"kl\":1.5,\"ce\":2.5,\"rows\":10}";
      log += "}\n";
    }
    ReportRun run;
    run.log = read_run_log(make_run(dir, "sft" + std::to_string(i), log), "sft/seed" + std::to_string(i + 1));
    run.eval = read_eval(dir.write("sft" + std::to_string(i) + ".json",
                                   "{\"agreement\":" + std::to_string(sft_agreement[i]) +
                                       ",\"kl\":" + std::to_string(sft_kl[i]) + ",\"ce\":" + std::to_string(sft_ce[i]) +
                                       ",\"teacher_score\":{\"mean_logprob_per_token\":" + std::to_string(-1.0 - i) +
                                       ",\"tokens\":10}}"));
    in.runs.push_back(std::move(run));
  }
  ReportRun kd1;
  kd1.log = read_run_log(make_run(dir, "kd1",
                                  "{\"step\":0,\"loss\":3,\"eval\":{\"agreement\":0.4,\"kl\":2,\"ce\":3}}\n"
                                  "{\"step\":20,\"loss\":2,\"eval\":{\"agreement\":0.8,\"kl\":0.5,\"ce\":1.5}}\n"),
                         "kd/seed1");
  in.runs.push_back(std::move(kd1));
  ReportRun kd2;
  kd2.log = read_run_log(make_run(dir, "kd2",
                                  "{\"step\":0,\"loss\":3.2,\"eval\":{\"agreement\":0.45,\"kl\":2,\"ce\":3}}\n"
                                  "{\"step\":20,\"loss\":2.2,\"eval\":{\"agreement\":0.7,\"kl\":0.8,\"ce\":1.7}}\n"),
                         odd_label);
  kd2.eval = read_eval(dir.write(
      "kd2.json", "{\"agreement\":0.9,\"kl\":0.3,\"ce\":1.3,\"teacher_score\":{\"mean_logprob_per_token\":-0.5}}"));
  in.runs.push_back(std::move(kd2));
  return in;
}

TEST(DistillReport, GroupMeansAndSpreads) {
  TempDir dir;
  const ReportInput in = sample_input(dir);
  EXPECT_EQ(final_metrics(in.runs[3]).source, "log, step 20");
  EXPECT_NE(final_metrics(in.runs[4]).source.find("kd2.json"), std::string::npos);
  const std::vector<GroupSummary> groups = summarize(in);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].group, "sft");
  EXPECT_EQ(groups[0].runs, (std::vector<size_t>{0, 1, 2}));
  EXPECT_NEAR(groups[0].agreement.mean, 0.65, 1e-12);
  EXPECT_NEAR(groups[0].agreement.sd, std::sqrt(0.0031), 1e-12);
  EXPECT_EQ(groups[0].agreement.min, 0.60);
  EXPECT_EQ(groups[0].agreement.max, 0.71);
  // KL 0.9, 1.0, 1.4: mean 1.1, deviations -0.2, -0.1, 0.3, squares 0.14, over 2.
  EXPECT_NEAR(groups[0].kl.mean, 1.1, 1e-12);
  EXPECT_NEAR(groups[0].kl.sd, std::sqrt(0.07), 1e-12);
  EXPECT_NEAR(groups[0].ce.mean, 6.4 / 3, 1e-12);
  EXPECT_NEAR(groups[0].teacher_score.mean, -2.0, 1e-12);  // -1, -2, -3
  EXPECT_NEAR(groups[0].teacher_score.sd, 1.0, 1e-12);
  EXPECT_EQ(groups[1].group, "kd");
  // KD: 0.8 from kd1's log, 0.9 from kd2's EVAL.json (not its log's 0.7).
  EXPECT_NEAR(groups[1].agreement.mean, 0.85, 1e-12);
  EXPECT_NEAR(groups[1].agreement.sd, std::sqrt(0.005), 1e-12);
  EXPECT_NEAR(groups[1].kl.mean, 0.4, 1e-12);
  EXPECT_NEAR(groups[1].ce.mean, 1.4, 1e-12);
  EXPECT_EQ(groups[1].teacher_score.n, 1);
  EXPECT_EQ(groups[1].teacher_score.mean, -0.5);
  const std::string text = summary_text(in);
  EXPECT_NE(text.find("0.65 +- 0.05568 [0.6, 0.71]"), std::string::npos) << text;
  EXPECT_NE(text.find("0.85 +- 0.07071 [0.8, 0.9]"), std::string::npos) << text;
  EXPECT_NE(render_report(in).find("1 of 2 runs"), std::string::npos);  // kd2's teacher score only
}

TEST(DistillReport, GroupsAgainstTheFirstPairedByRunName) {
  TempDir dir;
  const ReportInput in = sample_input(dir);
  const std::vector<Comparison> c = compare_groups(in);
  ASSERT_EQ(c.size(), 4u);
  for (const Comparison& x : c) {
    EXPECT_EQ(x.group, "kd");
    EXPECT_EQ(x.baseline, "sft");
  }
  // Pairs seed1 (kd 0.8 from its log vs sft 0.60) and seed2 (kd 0.9 from its EVAL.json vs 0.64).
  EXPECT_EQ(c[0].metric, "agreement");
  EXPECT_NEAR(c[0].mean_difference, 0.85 - 0.65, 1e-12);
  EXPECT_EQ(c[0].pairs, 2);
  EXPECT_EQ(c[0].better, 2);
  EXPECT_EQ(c[1].metric, "KL");  // 0.5 < 0.9 and 0.3 < 1.0: lower is better
  EXPECT_NEAR(c[1].mean_difference, 0.4 - 1.1, 1e-12);
  EXPECT_EQ(c[1].better, 2);
  EXPECT_EQ(c[2].metric, "CE");
  EXPECT_EQ(c[2].pairs, 2);
  EXPECT_EQ(c[2].better, 2);
  EXPECT_EQ(c[3].metric, "teacher score");  // kd1 has none: only seed2's pair, -0.5 against -2
  EXPECT_EQ(c[3].pairs, 1);
  EXPECT_EQ(c[3].better, 1);
  EXPECT_NEAR(c[3].mean_difference, -0.5 - -2.0, 1e-12);
  // Worse KL on one pair: sft/seed1's KL down to 0.4 (below kd/seed1's 0.5).
  ReportInput worse = sample_input(dir);
  worse.runs[0].eval->kl = 0.4;
  EXPECT_EQ(compare_groups(worse)[1].better, 1);
  // Run names that match nothing are not paired.
  worse.runs[3].log.label = "kd/other";
  worse.runs[4].log.label = "kd";
  EXPECT_EQ(compare_groups(worse)[1].pairs, 0);
  EXPECT_NE(summary_text(in).find("kd vs sft: KL mean difference -0.7, better on 2 of 2 paired runs"),
            std::string::npos)
      << summary_text(in);
}

TEST(DistillReport, PageIsSelfContainedAndEscaped) {
  TempDir dir;
  const ReportInput in = sample_input(dir, "kd/<b>&");
  const std::string html = render_report(in);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // Five curves and four final-value charts (the SFT runs have a teacher score).
  EXPECT_EQ(count_of(html, "<svg"), 9u);
  EXPECT_EQ(count_of(html, "</svg>"), 9u);
  EXPECT_EQ(count_of(html, "<figure>"), count_of(html, "</figure>"));
  EXPECT_EQ(count_of(html, "<table>"), count_of(html, "</table>"));
  EXPECT_EQ(count_of(html, "<tr>"), count_of(html, "</tr>"));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  // The only address is the SVG namespace's name.
  EXPECT_EQ(count_of(html, "http"), count_of(html, "xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_EQ(html.find("<b>&"), std::string::npos);
  EXPECT_NE(html.find("kd/&lt;b&gt;&amp;"), std::string::npos);
  EXPECT_NE(html.find("SFT &lt;vs&gt; KD"), std::string::npos);
  EXPECT_NE(html.find("--run &#39;a&amp;b&#39;"), std::string::npos);
  // Every chart has its data here (KL and CE come from the evals in the logs).
  EXPECT_EQ(html.find("no training loss"), std::string::npos);
  EXPECT_EQ(html.find("no held-out agreement"), std::string::npos);
  // The bold mean of the SFT group and its legend entry.
  EXPECT_NE(html.find("sft (mean of 3)"), std::string::npos);
  EXPECT_NE(html.find("sft (3 runs)"), std::string::npos);
  EXPECT_EQ(render_report(in), html);  // deterministic
}

TEST(DistillReport, MissingDataSaysSoInsteadOfAChart) {
  TempDir dir;
  ReportInput in;
  ReportRun run;
  run.log = read_run_log(make_run(dir, "r", "{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1.5}\n"), "sft/a");
  in.runs.push_back(std::move(run));
  const std::string html = render_report(in);
  EXPECT_NE(html.find("no held-out agreement in the logs"), std::string::npos);
  EXPECT_NE(html.find("no held-out KL in the logs"), std::string::npos);
  EXPECT_NE(html.find("no held-out CE in the logs"), std::string::npos);
  EXPECT_EQ(html.find("no training loss in the logs"), std::string::npos);
  EXPECT_EQ(count_of(html, "<polyline"), 1u);  // the one run's loss, drawn bold since it is alone
  EXPECT_NE(html.find("stroke-width=\"2.5\""), std::string::npos);
  // Five curves and the three final-value charts, which say they have no value; no teacher score chart.
  EXPECT_EQ(count_of(html, "</svg>"), 8u);
  EXPECT_EQ(count_of(html, "no run has this metric"), 3u);
  EXPECT_EQ(html.find("Teacher score of"), std::string::npos);
}

// The coordinates of a polyline's points attribute.
std::vector<std::pair<double, double>> polyline_points(const std::string& svg) {
  const std::smatch m = [&] {
    std::smatch found;
    std::regex_search(svg, found, std::regex("<polyline[^>]* points=\"([^\"]*)\""));
    return found;
  }();
  std::vector<std::pair<double, double>> out;
  if (m.empty()) return out;
  const std::string list = m[1];
  const std::regex pair("(-?[0-9.]+),(-?[0-9.]+)");
  for (auto it = std::sregex_iterator(list.begin(), list.end(), pair); it != std::sregex_iterator(); ++it)
    out.push_back({std::stod((*it)[1]), std::stod((*it)[2])});
  return out;
}

TEST(DistillReport, PolylineMapsTheDataOntoThePlotArea) {
  using G = ChartGeometry;
  Chart chart;
  chart.title = "t";
  chart.series.push_back({"a", "#000", false, {{100, 1.0}, {150, 3.0}, {200, 2.0}, {300, 1.5}}});
  const std::string svg = svg_line_chart(chart);
  const auto p = polyline_points(svg);
  ASSERT_EQ(p.size(), 4u) << svg;
  // x 100..300 onto left..right; y 1..3 onto bottom..top (SVG's y grows downwards).
  EXPECT_NEAR(p[0].first, G::left, 0.01);
  EXPECT_NEAR(p[0].second, G::bottom, 0.01);  // the smallest value at the bottom
  EXPECT_NEAR(p[1].first, G::left + (G::right - G::left) / 4, 0.01);
  EXPECT_NEAR(p[1].second, G::top, 0.01);  // the largest at the top
  EXPECT_NEAR(p[2].first, (G::left + G::right) / 2, 0.01);
  EXPECT_NEAR(p[2].second, (G::top + G::bottom) / 2, 0.01);
  EXPECT_NEAR(p[3].first, G::right, 0.01);
  EXPECT_NEAR(p[3].second, G::bottom - (G::bottom - G::top) / 4, 0.01);
  // Tick labels on both axes: 100, 150, ..., 300 (step 50) and 1, 1.5, ..., 3 (step 0.5).
  EXPECT_NE(svg.find(">150</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">2.5</text>"), std::string::npos) << svg;
  // An empty chart says so.
  Chart empty;
  empty.empty_text = "nothing <here>";
  const std::string none = svg_line_chart(empty);
  EXPECT_NE(none.find("nothing &lt;here&gt;"), std::string::npos);
  EXPECT_EQ(none.find("<polyline"), std::string::npos);
}

// The numbers of attribute `name` of every element whose class is `cls`, in order.
std::vector<double> attribute_of(const std::string& svg, const std::string& cls, const std::string& name) {
  std::vector<double> out;
  const std::regex element("class=\"" + cls + "\"[^>]* " + name + "=\"(-?[0-9.]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), element); it != std::sregex_iterator(); ++it)
    out.push_back(std::stod((*it)[1]));
  return out;
}

TEST(DistillReport, DotChartPlacesRunsMeanAndSpread) {
  // Values 1, 2, 3: mean 2, sample SD 1, so the SD line spans exactly the outer dots.
  const std::string svg = svg_dot_chart(
      "final <x>", "value",
      {{"g<1>", "#123456", {{"g/a", 1}, {"g/b", 3}, {"g/c", 2}}}, {"h", "#654321", {{"h/a", NAN}}}}, "none");
  const std::vector<double> dots = attribute_of(svg, "run", "cx");
  ASSERT_EQ(dots.size(), 3u) << svg;
  const std::vector<double> sd_from = attribute_of(svg, "sd", "x1"), sd_to = attribute_of(svg, "sd", "x2");
  const std::vector<double> mean = attribute_of(svg, "mean", "x1");
  ASSERT_EQ(sd_from.size(), 1u);
  ASSERT_EQ(mean.size(), 1u);
  EXPECT_NEAR(sd_from[0], dots[0], 0.011);
  EXPECT_NEAR(sd_to[0], dots[1], 0.011);
  EXPECT_NEAR(mean[0], dots[2], 0.011);
  EXPECT_NEAR(dots[2], (dots[0] + dots[1]) / 2, 0.011);
  EXPECT_LT(dots[0], dots[1]);
  EXPECT_NE(svg.find("2 \u00b1 1 (n=3)"), std::string::npos) << svg;
  EXPECT_NE(svg.find("final &lt;x&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">g&lt;1&gt;</text>"), std::string::npos);
  EXPECT_NE(svg.find("no value"), std::string::npos);  // h has none
  EXPECT_NE(svg_dot_chart("t", "v", {{"h", "#000", {}}}, "nothing here").find("nothing here"), std::string::npos);
  // A long group name is cut to fit left of the plot (18 characters: 17 and an ellipsis), whole in its tooltip;
  // the cut counts characters, not bytes ("é" is two).
  const std::string long_name = "\u00e9abcdefghijklmnopqrstuvwxyz<&>";
  const std::string cut = svg_dot_chart("t", "v", {{long_name, "#000", {{"x", 1}}}}, "none");
  EXPECT_NE(
      cut.find(">\u00e9abcdefghijklmnop\u2026<title>\u00e9abcdefghijklmnopqrstuvwxyz&lt;&amp;&gt;</title></text>"),
      std::string::npos)
      << cut;
}

void expect_ticks(double lo, double hi, int target, const std::vector<double>& want) {
  const std::vector<double> got = nice_ticks(lo, hi, target);
  ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << lo << ".." << hi << " #" << i;
}

TEST(DistillReport, NiceTicks) {
  expect_ticks(0, 1, 5, {0, 0.2, 0.4, 0.6, 0.8, 1});
  expect_ticks(0.0013, 0.0041, 5, {0.0015, 0.002, 0.0025, 0.003, 0.0035, 0.004});
  expect_ticks(0, 1000, 6, {0, 200, 400, 600, 800, 1000});
  expect_ticks(37, 4211, 6, {500, 1000, 1500, 2000, 2500, 3000, 3500, 4000});
  expect_ticks(-3, 7, 5, {-2, 0, 2, 4, 6});
  expect_ticks(1.85, 2.95, 5, {2.0, 2.2, 2.4, 2.6, 2.8});  // 1.1 / 5 = 0.22: step 0.2
  expect_ticks(7, 7, 5, {7});
  expect_ticks(1, 0, 5, {0, 0.2, 0.4, 0.6, 0.8, 1});
  EXPECT_TRUE(nice_ticks(0, NAN).empty());
  // Spans no step fits: the two ends, never a cast out of range (the sanitizers watch).
  expect_ticks(-1e308, 1e308, 5, {-1e308, 1e308});
  expect_ticks(1e300, 1.0000000000001e300, 5, {1e300, 1.0000000000001e300});
  expect_ticks(0, 1e-310, 5, {0, 1e-310});
  EXPECT_LE(nice_ticks(1e15, 1e15 + 1, 5).size(), 100u);
  Chart wide;
  wide.series.push_back({"w", "#000", true, {{0, -1e308}, {1, 1e308}}});
  const std::string svg = svg_line_chart(wide);
  EXPECT_NE(svg.find("too far apart"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_NE(svg_dot_chart("t", "v", {{"g", "#000", {{"g/a", -1e308}, {"g/b", 1e308}}}}, "none").find("too far apart"),
            std::string::npos);
  EXPECT_EQ(tick_label(0.0015, 0.0005), "0.0015");
  EXPECT_EQ(tick_label(0.6000000000000001, 0.2), "0.6");
  EXPECT_EQ(tick_label(1000, 500), "1000");
  EXPECT_EQ(tick_label(-0.0, 0.1), "0.0");
  EXPECT_EQ(tick_label(2.0, 0.1), "2.0");
}

TEST(DistillReport, ThinPointsAveragesBuckets) {
  std::vector<XY> points;
  for (int i = 0; i < 10; ++i) points.push_back({static_cast<double>(i), static_cast<double>(i * i)});
  const std::vector<XY> thin = thin_points(points, 4);  // buckets of 3: {0,1,2} {3,4,5} {6,7,8} {9}
  ASSERT_EQ(thin.size(), 4u);
  EXPECT_DOUBLE_EQ(thin[0].x, 1);
  EXPECT_DOUBLE_EQ(thin[0].y, 5.0 / 3);
  EXPECT_DOUBLE_EQ(thin[1].y, 50.0 / 3);
  EXPECT_DOUBLE_EQ(thin[2].y, 149.0 / 3);
  EXPECT_DOUBLE_EQ(thin[3].x, 9);
  EXPECT_DOUBLE_EQ(thin[3].y, 81);
  EXPECT_EQ(thin_points(points, 10).size(), 10u);
}

TEST(DistillReport, CommandWritesThePageAndPrintsTheSummary) {
  TempDir dir;
  const std::string a = make_run(dir, "a", "{\"step\":1,\"loss\":3,\"eval\":{\"agreement\":0.5,\"kl\":1,\"ce\":2}}\n");
  const std::string b =
      make_run(dir, "b", "{\"step\":1,\"loss\":2,\"eval\":{\"agreement\":0.7,\"kl\":0.6,\"ce\":1.5}}\n");
  const std::string c =
      make_run(dir, "c", "{\"step\":1,\"loss\":2,\"eval\":{\"agreement\":0.9,\"kl\":0.4,\"ce\":1.1}}\n");
  const std::string eval = dir.write("c.json", "{\"agreement\":0.8,\"kl\":0.5,\"ce\":1.2}");
  const std::string out = dir.file("report.html");
  const auto r =
      test::run_cli({"distill", "report", "--run", "sft/s1=" + a + ",kd/s1=" + b + ",kd/s2=" + c + ":" + eval, "--out",
                     out, "--title", "A <b> title"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // kd: agreement 0.7 (log) and 0.8 (c.json, over its log's 0.9): mean 0.75, SD sqrt(0.005).
  EXPECT_NE(r.out.find("0.75 +- 0.07071 [0.7, 0.8]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kd vs sft: KL mean difference -0.45, better on 1 of 1 paired runs"), std::string::npos)
      << r.out;
  const std::string html = test::read_text(out);
  EXPECT_NE(html.find("<h1>A &lt;b&gt; title</h1>"), std::string::npos);
  EXPECT_NE(html.find("distill report --run"), std::string::npos);  // how it was made
  EXPECT_EQ(count_of(html, "<svg"), count_of(html, "</svg>"));

  // The same runs from a --runs file, with a comment and blank lines.
  const std::string list = dir.write("runs.txt", "# runs\n\nsft/s1=" + a + "\n  kd/s1=" + b + "  \n");
  EXPECT_EQ(test::run_cli({"distill", "report", "--runs", list, "--out", out}).exit_code, 0);

  test::expect_one_line_error(test::run_cli({"distill", "report", "--run", "x=" + a + ",x=" + b, "--out", out}),
                              "given twice");
  test::expect_one_line_error(test::run_cli({"distill", "report", "--run", "x", "--out", out}), "LABEL=DIR");
  test::expect_one_line_error(test::run_cli({"distill", "report", "--out", out}), "no run");
  dir.write("a/log.jsonl", "{\"step\":1}\n{\"step\":true}\n");
  test::expect_one_line_error(test::run_cli({"distill", "report", "--run", "x=" + a, "--out", dir.file("bad.html")}),
                              "a/log.jsonl:2:");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.html")));
}

}  // namespace
}  // namespace orchard::distill
