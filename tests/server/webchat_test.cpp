// The web chat page (src/server/web_chat.h): its files embedded byte for byte from web/chat/
// (the oracle: the files on disk), and served over the real transport (httplib behind the front
// stage, as `orchard serve` installs it) with their content types and the headers that keep the
// page to its own origin. The page's behaviour in a browser: tests/server/webchat_test.mjs.
#include "server/web_chat.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "orchard/engine.h"
#include "server/adapter_registry.h"
#include "server/channel_waker.h"
#include "server/chat_service.h"
#include "server/front_stage.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_handler.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(WebChatFiles, EveryFileOfTheFolderIsEmbeddedByteForByte) {
  const std::filesystem::path folder = test::source_path("web/chat");
  size_t on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (!entry.is_regular_file()) continue;
    ++on_disk;
    const std::string name = entry.path().filename().string();
    const WebFile* found = nullptr;
    for (const WebFile& file : web_chat_files())
      if (file.name == name) found = &file;
    ASSERT_NE(found, nullptr) << name;
    EXPECT_EQ(found->bytes, read_file(entry.path())) << name;
  }
  EXPECT_GE(on_disk, 3u);  // index.html, app.js, style.css
  EXPECT_EQ(web_chat_files().size(), on_disk);
}

// The page runs only its own files: no inline script or handler, nothing from another origin
// (the Content-Security-Policy would block them, and the page would break).
TEST(WebChatFiles, ThePageLoadsNothingInlineAndNothingFromElsewhere) {
  const std::string html = read_file(test::source_path("web/chat/index.html"));
  const std::regex script(R"(<script\b([^>]*)>([\s\S]*?)</script>)", std::regex::icase);
  int scripts = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script); it != std::sregex_iterator(); ++it) {
    ++scripts;
    EXPECT_NE((*it)[1].str().find("src=\"/web/"), std::string::npos) << (*it)[0];
    EXPECT_EQ((*it)[2].str(), "") << (*it)[0];
  }
  EXPECT_EQ(scripts, 1);
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(\son[a-z]+\s*=)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<style\b|style=)", std::regex::icase)));
  EXPECT_EQ(html.find("http"), std::string::npos);
  // The script builds the DOM from text: no HTML sink anywhere in it.
  const std::string js = read_file(test::source_path("web/chat/app.js"));
  for (const char* sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"})
    EXPECT_EQ(js.find(sink), std::string::npos) << sink;
}

// `orchard serve`'s public port as serve() builds it, on the tiny chat model.
class WebChatServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { served_ = new Served(); }
  static void TearDownTestSuite() {
    delete served_;
    served_ = nullptr;
  }

  struct Served {
    Served()
        : model(Model::load(test::shared_path("models/tiny-chat/tiny-qwen2-chat-q8_0.gguf"))),
          tokenizer(load_model_tokenizer(*model)),
          engine(model, tokenizer, {.slots = 1, .n_ctx = 256, .n_threads = 1, .observer = &metrics}),
          service(tokenizer, "tiny", engine.n_ctx()),
          adapters(model, "tiny", false, false),
          handler(service, engine, waker, metrics, {}, &adapters),
          http(FrontServer::create(options.max_body_bytes)) {
      install_openai_routes(*http, {engine, service, handler, metrics, options, adapters});
      port = http->bind_to_any_port("127.0.0.1");
      thread = std::thread([this] { http->listen_after_bind(); });
      while (!http->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~Served() {
      http->stop();
      thread.join();
      http->finish();
    }

    ServerOptions options;
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer;
    Metrics metrics;
    ChannelWaker waker;
    Engine engine;
    ChatService service;
    AdapterRegistry adapters;
    OpenAIHandler handler;
    std::unique_ptr<FrontServer> http;
    int port = 0;
    std::thread thread;
  };

  static httplib::Client client() { return httplib::Client("127.0.0.1", served_->port); }
  static Served* served_;
};

WebChatServer::Served* WebChatServer::served_ = nullptr;

void expect_page_headers(const httplib::Result& r) {
  const std::string csp = r->get_header_value("Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;  // no 'unsafe-inline', no 'unsafe-eval'
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
}

TEST_F(WebChatServer, TheRootIsThePageWithItsHeaders) {
  auto r = client().Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(r->body, read_file(test::source_path("web/chat/index.html")));
  expect_page_headers(r);
}

// Every file the page names is served, with its type.
TEST_F(WebChatServer, ThePagesFilesAreServedWithTheirTypes) {
  const std::string html = read_file(test::source_path("web/chat/index.html"));
  const std::regex reference(R"((?:src|href)="(/web/[^"]+)\")");
  int files = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), reference); it != std::sregex_iterator(); ++it) {
    const std::string path = (*it)[1];
    auto r = client().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->body, read_file(test::source_path("web/chat/" + path.substr(5)))) << path;
    const std::string type = r->get_header_value("Content-Type");
    if (path.ends_with(".js")) {
      EXPECT_EQ(type, "text/javascript; charset=utf-8");
    }
    if (path.ends_with(".css")) {
      EXPECT_EQ(type, "text/css; charset=utf-8");
    }
    expect_page_headers(r);
    ++files;
  }
  EXPECT_EQ(files, 2);  // app.js and style.css
}

TEST_F(WebChatServer, HeadAnswersTheHeadersWithoutTheBody) {
  auto r = client().Head("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  expect_page_headers(r);
  auto js = client().Head("/web/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->body, "");
}

TEST_F(WebChatServer, AnUnknownFileIsA404ErrorObject) {
  for (const char* path : {"/web/nothing.js", "/web/", "/web/../CMakeLists.txt", "/web/chat/index.html", "/index.html",
                           "/web/INDEX.HTML"}) {
    auto r = client().Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_NE(r->body.find("\"error\""), std::string::npos) << path;
    EXPECT_EQ(r->get_header_value("Content-Security-Policy"), "") << path;
  }
  // The page answers GET and HEAD only.
  auto post = client().Post("/", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 404);
}

// The API beside the page is unchanged: the page's files do not shadow a route.
TEST_F(WebChatServer, TheApiStillAnswersBesideThePage) {
  auto r = client().Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("ok"), std::string::npos);
  auto models = client().Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
}

}  // namespace
}  // namespace orchard::server
