// C2SP signed notes and tlog checkpoints against pcc/signed-note-vectors.json (the spec's examples
// and Go's sumdb/note test keys): key ids, every valid note verified, every must-reject note
// refused, the parse-only notes and checkpoints read; then what the vectors leave out: signing,
// several signers, key string round trips, malformed keys, notes and checkpoints, strict base64.
#include "cloud/signed_note.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "test_paths.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

json load_vectors() {
  const std::string path = test::shared_path("pcc/signed-note-vectors.json");
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return json::parse(in);
}

std::string str(const json& v) { return v.get<std::string>(); }

// What a signature line carries after the name: base64(key id || signature).
std::string line_b64(const NoteSignature& sig) {
  Bytes raw{static_cast<uint8_t>(sig.key_id >> 24), static_cast<uint8_t>(sig.key_id >> 16),
            static_cast<uint8_t>(sig.key_id >> 8), static_cast<uint8_t>(sig.key_id)};
  raw.insert(raw.end(), sig.signature.begin(), sig.signature.end());
  return base64_encode(raw);
}

void expect_signatures(const std::vector<NoteSignature>& got, const json& listed, const std::string& name) {
  ASSERT_EQ(got.size(), listed.size()) << name;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, str(listed[i].at("key_name"))) << name;
    EXPECT_EQ(line_b64(got[i]), str(listed[i].at("sig_b64"))) << name;
    EXPECT_EQ(got[i].signature.size(), kEd25519SignatureSize) << name;
  }
}

// A vkey built from parts, so that each malformed one below has exactly one fault.
std::string vkey_string(const std::string& name, uint32_t id, uint8_t type, const Bytes& key) {
  Bytes raw{type};
  raw.insert(raw.end(), key.begin(), key.end());
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", id);
  return name + "+" + hex + "+" + base64_encode(raw);
}

TEST(SignedNote, KeyIds) {
  const json vectors = load_vectors();
  // Every vkey in the file whose id the vectors do not deliberately break.
  std::vector<std::string> vkeys;
  for (const json& c : vectors.at("valid"))
    for (const json& k : c.at("verify_with")) vkeys.push_back(str(k));
  size_t checked = 0;
  for (const std::string& vkey : vkeys) {
    const size_t plus = vkey.find('+');
    const std::string name = vkey.substr(0, plus);
    const uint32_t id = static_cast<uint32_t>(std::stoul(vkey.substr(plus + 1, 8), nullptr, 16));
    const Bytes key = base64_decode(vkey.substr(plus + 10));
    ASSERT_EQ(key.size(), 33u) << vkey;
    EXPECT_EQ(key[0], kNoteEd25519) << vkey;
    EXPECT_EQ(ed25519_key_id(name, ByteView(key).subspan(1)), id) << vkey;
    const NoteVerifier v = NoteVerifier::parse(vkey);
    EXPECT_EQ(v.key_id, id) << vkey;
    EXPECT_EQ(v.format(), vkey);
    ++checked;
  }
  EXPECT_EQ(checked, 3u);  // example.com/foo, PeterNeumann, EnochRoot
  EXPECT_EQ(NoteVerifier::parse(str(vectors.at("valid")[0].at("vkey"))).key_id, 0x530d903au);

  // Go's signer key: same id, and its public half is the published vkey.
  size_t skeys = 0;
  for (const json& c : vectors.at("valid")) {
    if (!c.contains("skey")) continue;
    const NoteSigner signer = NoteSigner::parse(str(c.at("skey")));
    EXPECT_EQ(signer.verifier().format(), str(c.at("vkey")));
    EXPECT_EQ(signer.format(), str(c.at("skey")));
    ++skeys;
  }
  EXPECT_EQ(skeys, 1u);
}

TEST(SignedNote, ValidVectors) {
  const json vectors = load_vectors();
  size_t checked = 0;
  for (const json& c : vectors.at("valid")) {
    const std::string name = str(c.at("name"));
    std::vector<NoteVerifier> all;
    for (const json& k : c.at("verify_with")) all.push_back(NoteVerifier::parse(str(k)));
    const VerifiedNote note = verify_note(str(c.at("note")), all);
    EXPECT_EQ(note.text, str(c.at("text"))) << name;
    expect_signatures(note.verified, c.at("signatures"), name);
    EXPECT_TRUE(note.unknown.empty()) << name;

    // With only the case's own vkey, the others' signatures are unknown, not errors.
    const NoteVerifier own = NoteVerifier::parse(str(c.at("vkey")));
    const VerifiedNote alone = verify_note(str(c.at("note")), std::span(&own, 1));
    ASSERT_EQ(alone.verified.size(), 1u) << name;
    EXPECT_EQ(alone.verified[0].name, own.name) << name;
    EXPECT_EQ(alone.unknown.size(), c.at("signatures").size() - 1) << name;

    const Note parsed = parse_note(str(c.at("note")));
    EXPECT_EQ(format_note(parsed), str(c.at("note"))) << name;

    // Ed25519 is deterministic: the published signing key reproduces its published signature.
    if (c.contains("skey")) {
      const NoteSigner signer = NoteSigner::parse(str(c.at("skey")));
      const std::string signed_note = sign_note(str(c.at("text")), signer);
      const Note mine = parse_note(signed_note);
      ASSERT_EQ(mine.signatures.size(), 1u);
      EXPECT_EQ(line_b64(mine.signatures[0]), str(c.at("signatures")[0].at("sig_b64"))) << name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, vectors.at("valid").size());
  EXPECT_EQ(checked, 2u);
}

TEST(SignedNote, MustRejectVectors) {
  const json vectors = load_vectors();
  size_t refused = 0;
  for (const json& c : vectors.at("must_reject")) {
    const std::string name = str(c.at("name"));
    bool threw = false;
    try {
      const NoteVerifier v = NoteVerifier::parse(str(c.at("vkey")));
      verify_note(str(c.at("note")), std::span(&v, 1));
    } catch (const Error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()), "") << name;
    }
    EXPECT_TRUE(threw) << name << ": " << str(c.at("why"));
    refused += threw;
  }
  EXPECT_EQ(refused, vectors.at("must_reject").size());
  EXPECT_EQ(refused, 6u);
}

TEST(SignedNote, ParseOnlyVectors) {
  const json vectors = load_vectors();
  const NoteSigner stranger = NoteSigner::generate("stranger.example/key");
  const NoteVerifier stranger_key = stranger.verifier();
  size_t parsed = 0, checkpoints = 0, listed_checkpoints = 0;
  for (const json& c : vectors.at("parse_only")) {
    const std::string name = str(c.at("name"));
    const Note note = parse_note(str(c.at("note")));
    EXPECT_EQ(note.text, str(c.at("text"))) << name;
    expect_signatures(note.signatures, c.at("signatures"), name);
    EXPECT_EQ(format_note(note), str(c.at("note"))) << name;
    // No published key: with any other key the note is refused, never silently accepted.
    EXPECT_THROW(verify_note(str(c.at("note")), std::span(&stranger_key, 1)), Error) << name;
    ++parsed;
    if (!c.contains("origin_line")) continue;
    ++listed_checkpoints;
    const Checkpoint cp = parse_checkpoint(note.text);
    EXPECT_EQ(cp.origin, str(c.at("origin_line"))) << name;
    EXPECT_EQ(cp.size, c.at("tree_size").get<uint64_t>()) << name;
    EXPECT_EQ(to_hex(cp.root_hash), str(c.at("root_hash_hex"))) << name;
    EXPECT_TRUE(cp.extensions.empty()) << name;
    EXPECT_EQ(format_checkpoint(cp), note.text) << name;
    ++checkpoints;
  }
  EXPECT_EQ(parsed, vectors.at("parse_only").size());
  EXPECT_EQ(parsed, 2u);
  EXPECT_EQ(checkpoints, listed_checkpoints);
  EXPECT_EQ(checkpoints, 1u);
}

TEST(SignedNote, SignVerifyRoundTrip) {
  const NoteSigner signer = NoteSigner::generate("orchard.example/release");
  const NoteVerifier verifier = signer.verifier();
  const std::string text = "orchard 1.2.0\nsha256 00ff\n";
  const std::string note = sign_note(text, signer);
  const VerifiedNote ok = verify_note(note, std::span(&verifier, 1));
  EXPECT_EQ(ok.text, text);
  ASSERT_EQ(ok.verified.size(), 1u);
  EXPECT_EQ(ok.verified[0].name, signer.name());
  EXPECT_EQ(ok.verified[0].key_id, signer.key_id());

  // One changed byte of text, or of signature, refuses the note.
  std::string tampered = note;
  tampered[8] = '3';
  EXPECT_THROW(verify_note(tampered, std::span(&verifier, 1)), Error);
  Note bad_sig = parse_note(note);
  bad_sig.signatures[0].signature[10] ^= 1;
  EXPECT_THROW(verify_note(format_note(bad_sig), std::span(&verifier, 1)), Error);
  // A wrongly sized signature from a known key is a failed signature, not an unknown one.
  Note short_sig = parse_note(note);
  short_sig.signatures[0].signature.pop_back();
  EXPECT_THROW(verify_note(format_note(short_sig), std::span(&verifier, 1)), Error);

  // Another key under the same name has another id: unknown, so no known signature.
  const NoteSigner same_name = NoteSigner::generate("orchard.example/release");
  const NoteVerifier other = same_name.verifier();
  EXPECT_THROW(verify_note(note, std::span(&other, 1)), Error);
  // No verifiers at all.
  EXPECT_THROW(verify_note(note, std::span<const NoteVerifier>()), Error);

  // Text with blank lines of its own, even at its end, comes back whole.
  for (const std::string t : {"a\n\nb\n", "a\n\n", "\n", "\xc3\xa8 unicode \xe2\x80\x94 ok\n"}) {
    const VerifiedNote v = verify_note(sign_note(t, signer), std::span(&verifier, 1));
    EXPECT_EQ(v.text, t);
  }
  // The empty text is signable in Ed25519 but not a note: it has no final newline.
  EXPECT_THROW(sign_note("", signer), Error);
  EXPECT_THROW(sign_note("no newline", signer), Error);
  EXPECT_THROW(sign_note("tab\there\n", signer), Error);
  EXPECT_THROW(sign_note("bad \xff utf8\n", signer), Error);
  EXPECT_THROW(sign_note("text\n", std::span<const NoteSigner* const>()), Error);
}

TEST(SignedNote, TwoSigners) {
  const NoteSigner a = NoteSigner::generate("log.example/a");
  const NoteSigner b = NoteSigner::generate("witness.example/b");
  const NoteSigner c = NoteSigner::generate("other.example/c");
  const NoteSigner* both[] = {&a, &b};
  const std::string note = sign_note("two keys\n", both);
  const NoteVerifier va = a.verifier(), vb = b.verifier(), vc = c.verifier();

  const VerifiedNote by_a = verify_note(note, std::span(&va, 1));
  ASSERT_EQ(by_a.verified.size(), 1u);
  EXPECT_EQ(by_a.verified[0].name, "log.example/a");
  ASSERT_EQ(by_a.unknown.size(), 1u);
  EXPECT_EQ(by_a.unknown[0].name, "witness.example/b");

  const VerifiedNote by_b = verify_note(note, std::span(&vb, 1));
  ASSERT_EQ(by_b.verified.size(), 1u);
  EXPECT_EQ(by_b.verified[0].name, "witness.example/b");

  const NoteVerifier ab[] = {vb, va};
  const VerifiedNote by_both = verify_note(note, ab);
  ASSERT_EQ(by_both.verified.size(), 2u);  // in note order
  EXPECT_EQ(by_both.verified[0].name, "log.example/a");
  EXPECT_EQ(by_both.verified[1].name, "witness.example/b");

  EXPECT_THROW(verify_note(note, std::span(&vc, 1)), Error);

  // A known key's second, forged line refuses the note although its first line verifies.
  Note forged = parse_note(note);
  NoteSignature copy = forged.signatures[0];
  copy.signature[0] ^= 0x80;
  forged.signatures.push_back(copy);
  EXPECT_THROW(verify_note(format_note(forged), std::span(&va, 1)), Error);
  // A repeated good line counts once.
  Note repeated = parse_note(note);
  repeated.signatures.push_back(repeated.signatures[0]);
  EXPECT_EQ(verify_note(format_note(repeated), std::span(&va, 1)).verified.size(), 1u);

  // Two verifier keys that claim one name and id are ambiguous.
  NoteVerifier impostor = vc;
  impostor.name = va.name;
  impostor.key_id = va.key_id;
  const NoteVerifier ambiguous[] = {va, impostor};
  EXPECT_THROW(verify_note(note, ambiguous), Error);
}

TEST(SignedNote, KeyStringRoundTrip) {
  const NoteSigner signer = NoteSigner::generate("orchard.example/release");
  const std::string vkey = signer.verifier().format();
  const NoteVerifier v = NoteVerifier::parse(vkey);
  EXPECT_EQ(v.name, signer.name());
  EXPECT_EQ(v.key_id, signer.key_id());
  EXPECT_EQ(v.public_key, signer.public_key());
  EXPECT_EQ(v.format(), vkey);

  const std::string skey = signer.format();
  EXPECT_EQ(skey.rfind("PRIVATE+KEY+orchard.example/release+", 0), 0u);
  const NoteSigner back = NoteSigner::parse(skey);
  EXPECT_EQ(to_hex(back.seed()), to_hex(signer.seed()));
  EXPECT_EQ(back.key_id(), signer.key_id());
  EXPECT_EQ(back.public_key(), signer.public_key());

  const NoteSigner same = NoteSigner::from_seed("orchard.example/release", signer.seed());
  EXPECT_EQ(same.public_key(), signer.public_key());
  EXPECT_EQ(same.sign(as_bytes("x\n")), signer.sign(as_bytes("x\n")));
  EXPECT_TRUE(v.verify(as_bytes("x\n"), signer.sign(as_bytes("x\n"))));
  EXPECT_FALSE(v.verify(as_bytes("y\n"), signer.sign(as_bytes("x\n"))));

  // Go accepts an upper-case key id; it is the same key.
  const std::string upper = v.name + "+" + [&] {
    std::string id = vkey.substr(v.name.size() + 1, 8);
    for (char& ch : id) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return id;
  }() + vkey.substr(v.name.size() + 9);
  EXPECT_EQ(NoteVerifier::parse(upper).key_id, v.key_id);

  // A name beyond ASCII is allowed; the id covers its UTF-8 bytes.
  const NoteSigner accented = NoteSigner::generate("caf\xc3\xa9.example/k");
  EXPECT_EQ(NoteVerifier::parse(accented.verifier().format()).public_key, accented.public_key());

  EXPECT_THROW(NoteSigner::from_seed("bad name", signer.seed()), Error);
  EXPECT_THROW(NoteSigner::from_seed("ok", Bytes(31)), Error);
  EXPECT_THROW(NoteSigner::generate(""), Error);
}

TEST(SignedNote, MalformedVerifierKeys) {
  const NoteSigner signer = NoteSigner::generate("example.com/k");
  const Bytes& pk = signer.public_key();
  const uint32_t id = signer.key_id();
  const std::string good = vkey_string("example.com/k", id, 0x01, pk);
  ASSERT_NO_THROW(NoteVerifier::parse(good));

  std::vector<std::pair<std::string, std::string>> bad = {
      {"wrong id", vkey_string("example.com/k", id ^ 1, 0x01, pk)},
      {"wrong type", vkey_string("example.com/k", id, 0x02, pk)},
      {"short key", vkey_string("example.com/k", ed25519_key_id("example.com/k", Bytes(pk.begin(), pk.end() - 1)),
                                0x01, Bytes(pk.begin(), pk.end() - 1))},
      {"long key", [&] {
         Bytes longer = pk;
         longer.push_back(0);
         return vkey_string("example.com/k", ed25519_key_id("example.com/k", longer), 0x01, longer);
       }()},
      {"type only", "example.com/k+" + good.substr(14, 8) + "+AQ=="},
      {"empty key", "example.com/k+" + good.substr(14, 8) + "+"},
      {"bad base64 char", good.substr(0, good.size() - 2) + "!="},
      {"bad base64 length", good.substr(0, good.size() - 1)},
      {"base64 whitespace", good.substr(0, 30) + " " + good.substr(31)},
      {"short id", "example.com/k+" + good.substr(14, 7) + "+" + good.substr(23)},
      {"non-hex id", "example.com/k+zzzzzzzz+" + good.substr(23)},
      {"no id", "example.com/k"},
      {"no key", "example.com/k+" + good.substr(14, 8)},
      {"empty name", vkey_string("", ed25519_key_id("", pk), 0x01, pk)},
      {"name with space", vkey_string("a b", ed25519_key_id("a b", pk), 0x01, pk)},
      {"name with tab", vkey_string("a\tb", ed25519_key_id("a\tb", pk), 0x01, pk)},
      {"name with newline", vkey_string("a\nb", ed25519_key_id("a\nb", pk), 0x01, pk)},
      {"name with NBSP", vkey_string("a\xc2\xa0" "b", ed25519_key_id("a\xc2\xa0" "b", pk), 0x01, pk)},
      {"name with em space", vkey_string("a\xe2\x80\x83" "b", ed25519_key_id("a\xe2\x80\x83" "b", pk), 0x01, pk)},
      {"name with ideographic space", vkey_string("a\xe3\x80\x80" "b", ed25519_key_id("a\xe3\x80\x80" "b", pk), 0x01, pk)},
      {"name with bad UTF-8", vkey_string("a\xc0\xaf" "b", ed25519_key_id("a\xc0\xaf" "b", pk), 0x01, pk)},
      {"name with control", vkey_string("a\x01" "b", ed25519_key_id("a\x01" "b", pk), 0x01, pk)},
  };
  for (const auto& [why, vkey] : bad) EXPECT_THROW(NoteVerifier::parse(vkey), Error) << why;

  EXPECT_FALSE(valid_key_name("a+b"));
  EXPECT_FALSE(valid_key_name(""));
  EXPECT_FALSE(valid_key_name("a\xe2\x80\xa8" "b"));  // U+2028 line separator
  EXPECT_TRUE(valid_key_name("example.com/log42"));
  EXPECT_TRUE(valid_key_name("\xe2\x80\x94"));  // an em dash is no space

  // Signer keys: the same checks, and the prefix.
  const std::string skey = signer.format();
  // PRIVATE+KEY+name+id+base64: the base64 starts after the fourth '+' (it may hold '+' itself).
  size_t fourth = 0;
  for (int i = 0; i < 4; ++i) fourth = skey.find('+', fourth) + 1;
  const std::string secret = skey.substr(fourth);
  EXPECT_THROW(NoteSigner::parse(skey.substr(8)), Error);
  EXPECT_THROW(NoteSigner::parse("PRIVATE+KEY+example.com/k+00000000+" + secret), Error);
  EXPECT_THROW(NoteSigner::parse(skey.substr(0, skey.size() - 4)), Error);
  // The errors never quote the secret.
  try {
    NoteSigner::parse("PRIVATE+KEY+example.com/k+00000000+" + secret);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find(secret), std::string::npos);
  }
}

TEST(SignedNote, Base64) {
  // RFC 4648 §10.
  const std::vector<std::pair<std::string, std::string>> rfc = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : rfc) {
    EXPECT_EQ(base64_encode(as_bytes(plain)), encoded);
    const Bytes back = base64_decode(encoded);
    EXPECT_EQ(std::string(back.begin(), back.end()), plain);
  }
  Bytes all(256);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
  for (const char* bad : {"Zg", "Zg=", "Zh==", "Zm9=", "Z===", "====", "=Zg=", "Zg==Zg==", "Zm 9", "Zm9v\n",
                          "Zm-v", "Zm_v", "Zm9v===="})
    EXPECT_THROW(base64_decode(bad), Error) << bad;
}

TEST(SignedNote, MalformedNotes) {
  const NoteSigner signer = NoteSigner::generate("example.com/k");
  const NoteVerifier v = signer.verifier();
  const std::string note = sign_note("hello\n", signer);
  ASSERT_NO_THROW(verify_note(note, std::span(&v, 1)));
  const std::string sig_line = note.substr(note.find("\n\n") + 2);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"no final newline", note.substr(0, note.size() - 1)},
      {"no signatures", "hello\n\n"},
      {"no blank line", "hello\n" + sig_line},
      {"text only", "hello\n"},
      {"empty", ""},
      {"blank line after signatures", note + "\n"},
      {"hyphen for em dash", "hello\n\n- " + sig_line.substr(4)},
      {"no space after dash", "hello\n\n\xe2\x80\x94" + sig_line.substr(4)},
      {"no space after name", "hello\n\n\xe2\x80\x94 example.com/k\n"},
      {"empty signature", "hello\n\n\xe2\x80\x94 example.com/k \n"},
      {"signature of only a key id", "hello\n\n\xe2\x80\x94 example.com/k AAAAAA==\n"},
      {"two spaces", "hello\n\n\xe2\x80\x94 example.com/k  " + sig_line.substr(4 + 14)},
      {"bad base64", "hello\n\n\xe2\x80\x94 example.com/k AAAA!AAA\n"},
      {"tab in text", "hel\tlo\n\n" + sig_line},
      {"CR in text", "hello\r\n\n" + sig_line},
      {"NUL in text", std::string("hel\0lo\n\n", 8) + sig_line},
      {"invalid UTF-8", "hel\xfflo\n\n" + sig_line},
      {"overlong UTF-8", "hel\xc0\xafo\n\n" + sig_line},
      {"surrogate", "hel\xed\xa0\x80o\n\n" + sig_line},
      {"truncated UTF-8", "hello\xe2\x80\n\n" + sig_line},
  };
  for (const auto& [why, text] : bad) {
    EXPECT_THROW(parse_note(text), Error) << why;
    EXPECT_THROW(verify_note(text, std::span(&v, 1)), Error) << why;
  }

  // A 68-byte signature leaves 2 unused bits in its last base64 digit; set, they would make a
  // second spelling of the same signature.
  {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string malleable = note;
    const size_t last = malleable.size() - 3;  // before "=\n"
    ASSERT_EQ(malleable.substr(last + 1), "=\n");
    malleable[last] = alphabet[alphabet.find(malleable[last]) ^ 1];
    EXPECT_THROW(parse_note(malleable), Error);
  }

  // A malformed line from an unknown key still makes the note malformed.
  EXPECT_THROW(verify_note(note + "\xe2\x80\x94 other.example AAAA!AAA\n", std::span(&v, 1)), Error);
  // A well-formed unknown line is ignored.
  EXPECT_EQ(verify_note(note + "\xe2\x80\x94 other.example AAAAAAAA\n", std::span(&v, 1)).unknown.size(), 1u);

  // Signature count and size limits.
  std::string many = note;
  while (parse_note(many).signatures.size() < kMaxNoteSignatures) many += sig_line;
  EXPECT_EQ(verify_note(many, std::span(&v, 1)).verified.size(), 1u);
  EXPECT_THROW(parse_note(many + sig_line), Error);
  const std::string big_text = std::string(kMaxNoteSize, 'a') + "\n";
  EXPECT_THROW(sign_note(big_text, signer), Error);
  EXPECT_THROW(parse_note(big_text + "\n" + sig_line), Error);
}

TEST(SignedNote, CheckpointEdgeCases) {
  const std::string root = base64_encode(Bytes(32, 0xab));
  const Checkpoint cp = parse_checkpoint("example.com/log\n0\n" + root + "\n");
  EXPECT_EQ(cp.origin, "example.com/log");
  EXPECT_EQ(cp.size, 0u);
  EXPECT_EQ(cp.root_hash, Bytes(32, 0xab));
  EXPECT_EQ(parse_checkpoint("o\n18446744073709551615\n" + root + "\n").size, UINT64_MAX);

  const Checkpoint ext = parse_checkpoint("o\n42\n" + root + "\nfirst ext\nsecond\n");
  EXPECT_EQ(ext.size, 42u);
  EXPECT_EQ(ext.extensions, (std::vector<std::string>{"first ext", "second"}));
  EXPECT_EQ(format_checkpoint(ext), "o\n42\n" + root + "\nfirst ext\nsecond\n");
  EXPECT_EQ(parse_checkpoint(format_checkpoint(ext)), ext);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"leading zero", "o\n007\n" + root + "\n"},
      {"double zero", "o\n00\n" + root + "\n"},
      {"size overflow", "o\n18446744073709551616\n" + root + "\n"},
      {"huge size", "o\n99999999999999999999999\n" + root + "\n"},
      {"negative size", "o\n-1\n" + root + "\n"},
      {"plus sign", "o\n+1\n" + root + "\n"},
      {"space in size", "o\n 1\n" + root + "\n"},
      {"trailing space", "o\n1 \n" + root + "\n"},
      {"hex size", "o\n0x10\n" + root + "\n"},
      {"empty size", "o\n\n" + root + "\n"},
      {"root 31 bytes", "o\n1\n" + base64_encode(Bytes(31)) + "\n"},
      {"root 33 bytes", "o\n1\n" + base64_encode(Bytes(33)) + "\n"},
      {"root empty", "o\n1\n\n"},
      {"root bad base64", "o\n1\n" + root.substr(0, 43) + "\n"},
      {"root unpadded", "o\n1\n" + root.substr(0, 43) + "A\n"},
      {"missing final newline", "o\n1\n" + root},
      {"two lines", "o\n1\n"},
      {"empty origin", "\n1\n" + root + "\n"},
      {"empty extension", "o\n1\n" + root + "\n\n"},
      {"empty middle extension", "o\n1\n" + root + "\na\n\nb\n"},
      {"control character", "o\t\n1\n" + root + "\n"},
      {"empty", ""},
  };
  for (const auto& [why, text] : bad) EXPECT_THROW(parse_checkpoint(text), Error) << why;

  EXPECT_THROW(format_checkpoint({"", 1, Bytes(32), {}}), Error);
  EXPECT_THROW(format_checkpoint({"a\nb", 1, Bytes(32), {}}), Error);
  EXPECT_THROW(format_checkpoint({"o", 1, Bytes(31), {}}), Error);
  EXPECT_THROW(format_checkpoint({"o", 1, Bytes(32), {""}}), Error);

  // A checkpoint signed and read back through a note.
  const NoteSigner log = NoteSigner::generate("example.com/log");
  const NoteVerifier vlog = log.verifier();
  const Checkpoint head{"example.com/log", 123456789, Bytes(32, 7), {}};
  const VerifiedNote note = verify_note(sign_note(format_checkpoint(head), log), std::span(&vlog, 1));
  EXPECT_EQ(parse_checkpoint(note.text), head);
}

}  // namespace
}  // namespace orchard::cloud
