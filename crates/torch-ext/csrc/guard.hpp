// The rule every extern "C" function of the shim follows: no C++ exception crosses the
// boundary. `guarded` runs a body, keeps the message of what it threw in a thread-local
// string (read with mlmx_last_error) and returns 0 on success, 1 on failure.
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace mlmx {

inline thread_local std::string last_error;

template <typename F>
int guarded(F&& body) {
    try {
        body();
        return 0;
    } catch (const c10::Error& e) {
        // what() carries a C++ backtrace meant for libtorch developers, not for our users.
        last_error = e.what_without_backtrace();
    } catch (const std::exception& e) {
        last_error = e.what();
    } catch (...) {
        last_error = "unknown C++ exception";
    }
    return 1;
}

}  // namespace mlmx
