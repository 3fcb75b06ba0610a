#include "kernels/cpu_features.h"

#include <cstdint>
#include <cstdlib>

#include "base/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace orchard {
namespace {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool neon_dotprod = false, neon_i8mm = false;  // ARM, from the kernel's hardware capabilities
};

#if defined(__x86_64__)
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (!osxsave) return f;
  // The OS must save the registers a path uses: YMM (bits 1-2), and opmask/ZMM (bits 5-7).
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm_os && (b & (1u << 5));
  f.avx512f = zmm_os && (b & (1u << 16));
  f.avx512dq = zmm_os && (b & (1u << 17));
  f.avx512bw = zmm_os && (b & (1u << 30));
  f.avx512vl = zmm_os && (b & (1u << 31));
  f.avx512vnni = zmm_os && (c & (1u << 11));
  return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
  constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP: SDOT/UDOT
  constexpr unsigned long kHwcap2I8mm = 1ul << 13;    // HWCAP2_I8MM: USDOT, SMMLA
  CpuFeatures f;
  f.neon_dotprod = getauxval(AT_HWCAP) & kHwcapAsimdDp;
  f.neon_i8mm = f.neon_dotprod && (getauxval(AT_HWCAP2) & kHwcap2I8mm);
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

constexpr Isa kAllIsas[] = {Isa::generic, Isa::avx2, Isa::avx512, Isa::avx512vnni, Isa::neon_dotprod, Isa::neon_i8mm};

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::neon_dotprod: return "neon_dotprod";
    case Isa::neon_i8mm: return "neon_i8mm";
  }
  return "?";
}

std::optional<Isa> parse_isa(std::string_view name) {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) return isa;
  return std::nullopt;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2: return avx2;
    case Isa::avx512: return avx512;
    case Isa::avx512vnni: return avx512 && f.avx512vnni;
    case Isa::neon_dotprod: return f.neon_dotprod;
    case Isa::neon_i8mm: return f.neon_i8mm;
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa selected_isa() {
  if (const char* env = std::getenv("ORCHARD_ISA"); env && *env) {
    const std::string_view name(env);
    if (name == "reference") return supported_isas().back();  // handled by select_kernels
    auto isa = parse_isa(name);
    if (!isa) fail("ORCHARD_ISA='", name, "' is not one of generic, avx2, avx512, avx512vnni, neon_dotprod, neon_i8mm, reference");
    if (!isa_supported(*isa)) fail("ORCHARD_ISA='", name, "': this CPU cannot run that path");
    return *isa;
  }
  return supported_isas().back();
}

}  // namespace orchard
