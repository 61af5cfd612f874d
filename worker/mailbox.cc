#include "worker/mailbox.h"

#include <cstring>

namespace popguard::worker {

namespace {

// Index of the first CR or LF at or after `from`, or in.size().  memchr is
// vectorised; most lines hold neither byte, so the copy runs in spans.
std::size_t FindLineBreak(std::string_view in, std::size_t from) {
  const char* p = in.data() + from;
  std::size_t len = in.size() - from;
  const void* lf = std::memchr(p, '\n', len);
  std::size_t limit = lf ? static_cast<const char*>(lf) - p : len;
  const void* cr = std::memchr(p, '\r', limit);
  return from + (cr ? static_cast<const char*>(cr) - p : limit);
}

std::uint64_t CountByte(std::string_view in, char c) {
  std::uint64_t n = 0;
  const char* p = in.data();
  const char* end = p + in.size();
  while (p < end) {
    const void* hit = std::memchr(p, c, end - p);
    if (!hit) break;
    n++;
    p = static_cast<const char*>(hit) + 1;
  }
  return n;
}

}  // namespace

WireEncoder::WireEncoder(std::optional<std::uint32_t> body_lines)
    : body_left_(body_lines) {}

void WireEncoder::EndLine(std::string* out) {
  out->append("\r\n");
  bool was_empty = line_start_;
  line_start_ = true;
  if (!body_left_) return;
  if (in_header_) {
    if (!was_empty) return;
    in_header_ = false;
  } else {
    --*body_left_;
  }
  if (*body_left_ == 0) done_ = true;
}

void WireEncoder::Feed(std::string_view in, std::string* out) {
  std::size_t i = 0;
  while (i < in.size() && !done_) {
    char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      EndLine(out);
      // CRLF is one line end; a bare CR ends its line and c starts the
      // next, so c is looked at again.
      if (c == '\n') i++;
      continue;
    }
    if (c == '\r') {
      pending_cr_ = true;
      i++;
      continue;
    }
    if (c == '\n') {
      EndLine(out);
      i++;
      continue;
    }
    if (line_start_ && c == '.') {
      out->push_back('.');
      stuffed_++;
    }
    line_start_ = false;
    std::size_t end = FindLineBreak(in, i);
    out->append(in.data() + i, end - i);
    i = end;
  }
}

void WireEncoder::Finish(std::string* out) {
  if (!done_ && (pending_cr_ || !line_start_)) out->append("\r\n");
  pending_cr_ = false;
  line_start_ = true;
  done_ = true;
  out->append(".\r\n");
}

void MessageSizer::Feed(std::string_view in) {
  if (in.empty()) return;
  raw_ += in.size();
  lf_ += CountByte(in, '\n');
  cr_ += CountByte(in, '\r');
  if (last_ == '\r' && in.front() == '\n') crlf_++;
  const char* p = in.data();
  const char* end = p + in.size();
  while (p < end) {
    const void* hit = std::memchr(p, '\r', end - p);
    if (!hit) break;
    p = static_cast<const char*>(hit) + 1;
    if (p < end && *p == '\n') crlf_++;
  }
  last_ = in.back();
}

std::uint64_t MessageSizer::Finish() const {
  // Each bare LF and each bare CR becomes a two-octet CRLF.
  std::uint64_t size = raw_ + (lf_ - crlf_) + (cr_ - crlf_);
  if (last_ != '\n' && last_ != '\r') size += 2;
  return size;
}

}  // namespace popguard::worker
