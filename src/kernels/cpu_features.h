// Which instruction-set path the fast kernels run, chosen at run time from the CPU's features
// (and what the OS lets a process use), or forced by ORCHARD_ISA for tests and comparisons.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

namespace orchard {

// Ordered from least to most capable within each architecture; `generic` is portable C++.
enum class Isa { generic, avx2, avx512, avx512vnni, neon_dotprod, neon_i8mm };

std::string_view isa_name(Isa isa);
std::optional<Isa> parse_isa(std::string_view name);

// Whether this CPU and OS can run `isa`.
bool isa_supported(Isa isa);
// Every supported ISA path, least capable first.
std::vector<Isa> supported_isas();
// The best supported path, unless ORCHARD_ISA names another one (an unsupported or unknown
// name is an orchard::Error, so that a test never silently runs a different path).
Isa selected_isa();

}  // namespace orchard
