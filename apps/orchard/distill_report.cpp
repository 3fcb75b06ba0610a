// orchard distill report (--run LABEL=DIR[:EVAL.json][,LABEL=...] | --runs FILE) --out REPORT.html [--title TEXT]
//
// Distillation runs side by side (issue 18) as one self-contained HTML page: per group of runs (the
// label's part before the first '/': "kd/seed1", "kd/seed2") the mean and spread of the final
// agreement, KL, CE and teacher score, a table of the runs, and the curves of training loss and the
// held-out metrics over steps as inline SVG. src/distill/report.h has the inputs' formats. The
// group summary is printed too. Several runs go in one --run, separated by commas (the CLI's
// options are given once each), or in a --runs file, one LABEL=DIR[:EVAL.json] a line.
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/mapped_file.h"
#include "command.h"
#include "distill/report.h"

namespace orchard::cli {
namespace {

// The words this process was started with, quoted for a shell where needed, for the page to say how it was made.
std::string own_command_line() {
  std::string raw;
  try {
    raw = read_text_file("/proc/self/cmdline", 1 << 20);
  } catch (const Error&) {
    return "";
  }
  std::string out;
  size_t at = 0;
  while (at < raw.size()) {
    size_t end = raw.find('\0', at);
    if (end == std::string::npos) end = raw.size();
    const std::string word = raw.substr(at, end - at);
    at = end + 1;
    if (!out.empty()) out += ' ';
    const bool plain = !word.empty() && word.find_first_not_of(
                                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      out += word;
      continue;
    }
    out += '\'';
    for (const char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (true) {
    const size_t end = text.find(separator, at);
    parts.push_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) return parts;
    at = end + 1;
  }
}

int distill_report(Args& args) {
  std::vector<std::string> specs;
  if (const auto runs = args.get("run"))
    for (const std::string& spec : split(*runs, ','))
      if (!spec.empty()) specs.push_back(spec);
  if (const auto file = args.get("runs"))
    for (std::string line : split(read_text_file(*file, kMaxJsonFileBytes), '\n')) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line[start] == '#') continue;
      specs.push_back(line.substr(start, line.find_last_not_of(" \t") - start + 1));
    }
  const std::string out = args.require("out");
  distill::ReportInput input;
  input.title = args.get_or("title", input.title);
  args.finish();
  if (specs.empty()) fail("distill report: no run: give --run LABEL=DIR[:EVAL.json][,...] or --runs FILE");
  input.command_line = own_command_line();
  std::set<std::string> labels;
  for (const std::string& spec : specs) {
    const distill::RunSpec r = distill::parse_run_spec(spec);
    if (!labels.insert(r.label).second) fail("distill report: the label ", r.label, " is given twice");
    distill::ReportRun run;
    if (r.dir.empty()) {
      run.log.label = r.label;
      run.log.group = distill::group_of(r.label);
    } else {
      run.log = distill::read_run_log(r.dir, r.label);
    }
    if (!r.eval.empty()) run.eval = distill::read_eval(r.eval);
    for (const std::string& w : run.log.warnings) std::fprintf(stderr, "distill report: %s\n", w.c_str());
    input.runs.push_back(std::move(run));
  }
  const std::string html = distill::render_report(input);
  AtomicFile file(out);
  file.write(html);
  file.commit();
  std::fputs(distill::summary_text(input).c_str(), stdout);
  std::printf("wrote %s (%zu runs, %zu bytes)\n", out.c_str(), input.runs.size(), html.size());
  return 0;
}

const RegisterCommand kReport("distill report",
                              "distillation runs side by side: loss and held-out curves, means and spreads (HTML)",
                              distill_report);

}  // namespace
}  // namespace orchard::cli
