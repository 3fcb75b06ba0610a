// Orchard: on-device-first generative AI engine. This umbrella header is the public C++ API.
#pragma once
#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "orchard/adapter.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
