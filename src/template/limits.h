// Bounds that keep a hostile template from exhausting time, memory or the native stack. Python
// jinja2 has its own (sandbox MAX_RANGE, the interpreter's recursion limit); these stand in for
// them and are generous for any real chat template.
#pragma once
#include <cstddef>
#include <cstdint>

namespace orchard::jinja {

struct RenderLimits {
  int64_t max_steps = 5'000'000;          // expression evaluations plus loop iterations
  int max_call_depth = 64;                // nested macro calls
  size_t max_string_bytes = 64u << 20;    // any one string, the output included
  size_t max_list_items = 1u << 20;       // any one list built by the template
  int64_t max_range = 100'000;            // jinja2 sandbox's MAX_RANGE
  // Native stack a render may use below its entry. Each limit above is safe alone, but they
  // multiply (64 macro calls, each inside 128 blocks, each evaluating a 256-level expression),
  // so the depth is also bounded where it is spent. 512 KiB is the whole stack of a secondary
  // thread on Apple platforms; the shared chat templates use under 20 KiB.
  size_t max_stack_bytes = 512u << 10;
};

}  // namespace orchard::jinja
