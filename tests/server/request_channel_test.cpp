#include "server/request_channel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace orchard::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TokenStep step_with(const std::string& text) {
  TokenStep step;
  step.text = text;
  return step;
}

TEST(RequestChannel, StepsBeforeTheNextWriteTimeArriveTogether) {
  ChannelWaker waker;
  auto channel = std::make_shared<RequestChannel>(waker, milliseconds(200));
  std::vector<TokenStep> steps;
  ASSERT_TRUE(channel->push(step_with("a")));
  const Clock::time_point next_write = Clock::now() + milliseconds(200);
  ASSERT_TRUE(channel->take(steps));  // the first take waits for no interval
  ASSERT_EQ(steps.size(), 1u);

  std::thread producer([&] {
    for (const char* text : {"b", "c", "d"}) {
      channel->push(step_with(text));
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  ASSERT_TRUE(channel->take(steps));
  EXPECT_GE(Clock::now(), next_write);
  producer.join();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].text + steps[1].text + steps[2].text, "bcd");
}

TEST(RequestChannel, TheEndIsNotHeldBackByTheWriteInterval) {
  ChannelWaker waker;
  // An interval far longer than the test's timeout: only the close can end the second wait.
  auto channel = std::make_shared<RequestChannel>(waker, std::chrono::hours(1));
  std::vector<TokenStep> steps;
  const Clock::time_point started = Clock::now();
  channel->push(step_with("first"));
  ASSERT_TRUE(channel->take(steps));
  std::thread producer([&] {
    channel->push(step_with("last"));
    channel->close(JobSummary{.stop = StopReason::max_tokens, .completion_tokens = 1});
  });
  ASSERT_TRUE(channel->take(steps));
  producer.join();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].text, "last");
  EXPECT_FALSE(channel->take(steps));
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(10));
  EXPECT_EQ(channel->summary().completion_tokens, 1);
}

TEST(RequestChannel, TakeAllWaitsForTheEnd) {
  ChannelWaker waker;
  auto channel = std::make_shared<RequestChannel>(waker);
  std::vector<TokenStep> steps;
  channel->push(step_with("-"));
  EXPECT_FALSE(channel->take_all(steps, milliseconds(1)));  // running: nothing is taken
  EXPECT_TRUE(steps.empty());
  std::thread producer([&] {
    for (int i = 0; i < 5; ++i) {
      channel->push(step_with(std::to_string(i)));
      std::this_thread::sleep_for(milliseconds(2));
    }
    channel->close(JobSummary{.stop = StopReason::end_of_sequence, .completion_tokens = 5});
  });
  while (!channel->take_all(steps, milliseconds(1))) {
  }
  producer.join();
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_EQ(steps[5].text, "4");
  EXPECT_EQ(channel->summary().stop, StopReason::end_of_sequence);
}

TEST(RequestChannel, WaitStartedReturnsAtTheFirstStepOrTheEnd) {
  ChannelWaker waker;
  auto started = std::make_shared<RequestChannel>(waker);
  std::thread producer([&] {
    std::this_thread::sleep_for(milliseconds(5));  // most often after the wait has begun
    started->push(step_with("a"));
  });
  started->wait_started();  // would wait forever if the push did not wake it
  producer.join();
  std::vector<TokenStep> steps;
  EXPECT_FALSE(started->take_all(steps, milliseconds(0)));  // started, not ended

  auto refused = std::make_shared<RequestChannel>(waker);
  std::thread closer([&] { refused->close(JobSummary{.error = "refused"}); });
  refused->wait_started();
  closer.join();
  EXPECT_EQ(refused->summary().error, "refused");
}

// A stream whose job is queued writes nothing, so only the wait can notice the client leave.
TEST(RequestChannel, AWaitThatFindsTheClientGoneCancelsTheJob) {
  ChannelWaker waker;
  auto channel = std::make_shared<RequestChannel>(waker);
  std::atomic<int> asked{0};
  bool more = true;
  std::thread http([&] {
    std::vector<TokenStep> steps;
    more = channel->take(steps, [&] { return ++asked < 2; });  // present at first, then gone
  });
  while (!channel->cancelled()) std::this_thread::sleep_for(milliseconds(1));
  EXPECT_EQ(asked.load(), 2);  // not asked again once cancelled
  EXPECT_FALSE(channel->push(step_with("a")));  // the scheduler learns it at its next step
  channel->close(JobSummary{.stop = StopReason::cancelled});
  http.join();
  EXPECT_TRUE(more);  // the step pushed before the close is still taken
}

TEST(RequestChannel, PushReportsACancelledRequest) {
  ChannelWaker waker;
  auto channel = std::make_shared<RequestChannel>(waker);
  EXPECT_TRUE(channel->push(step_with("a")));
  channel->cancel();
  EXPECT_FALSE(channel->push(step_with("b")));
}

}  // namespace
}  // namespace orchard::server
