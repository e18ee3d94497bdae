//! A server-sent events decoder: bytes as they come off the socket in, the `data` of each complete
//! event out.
//!
//! Written to the WHATWG rules that matter for chat APIs: lines end in LF, CRLF or CR (and a chunk
//! may end between the CR and the LF); `:` lines are comments; `event`, `id` and `retry` fields are
//! read and ignored, because OpenAI-shaped streams put everything in `data`; several `data` lines of
//! one event are joined with LF; a blank line ends the event. Events may be split anywhere across
//! chunks, including inside a UTF-8 character.

/// Decodes a byte stream into event data, one [`push`](SseDecoder::push) at a time.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// Bytes received but not yet consumed as whole lines.
    buffer: Vec<u8>,
    /// The `data` of the event being read, each line followed by LF.
    data: String,
    /// Whether the event being read has a `data` field, which an empty one still counts as.
    has_data: bool,
    /// The stream has ended: an unterminated last line is a line, and a pending event is dispatched.
    ended: bool,
}

impl SseDecoder {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Marks the end of the byte stream. Servers that close without the final blank line still had
    /// their last event counted, which is more useful than the specification's "discard it".
    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    /// The data of the next complete event, `None` until one is buffered. Fails on a line that is
    /// not UTF-8, with a description of the bad bytes.
    pub(crate) fn next_event(&mut self) -> Result<Option<String>, String> {
        while let Some(line) = self.next_line() {
            let line = String::from_utf8(line)
                .map_err(|e| format!("a line of the event stream is not UTF-8 ({e})"))?;
            if line.is_empty() {
                if let Some(data) = self.take_event() {
                    return Ok(Some(data));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            if field == "data" {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
        }
        if self.ended {
            return Ok(self.take_event());
        }
        Ok(None)
    }

    fn take_event(&mut self) -> Option<String> {
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(data)
    }

    /// The next whole line without its terminator, consumed from the buffer.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r');
        let Some(end) = end else {
            if self.ended && !self.buffer.is_empty() {
                return Some(std::mem::take(&mut self.buffer));
            }
            return None;
        };
        let terminator = if self.buffer[end] == b'\r' {
            match self.buffer.get(end + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                // A CR at the end of a chunk may be the first half of a CRLF.
                None if !self.ended => return None,
                None => 1,
            }
        } else {
            1
        };
        let line = self.buffer[..end].to_vec();
        self.buffer.drain(..end + terminator);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut SseDecoder) -> Vec<String> {
        let mut events = Vec::new();
        while let Some(event) = decoder.next_event().expect("valid stream") {
            events.push(event);
        }
        events
    }

    #[test]
    fn reads_data_and_ignores_comments_and_other_fields() {
        let mut decoder = SseDecoder::default();
        decoder.push(b": keep-alive\n\nevent: message\nid: 7\ndata: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(decode_all(&mut decoder), vec!["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn every_line_ending_and_every_split_point_gives_the_same_events() {
        let text = "data: {\"text\":\"héllo\"}\r\n\r\n:c\r\ndata:x\rdata: y\r\rdata: [DONE]\n\n";
        let expected = vec!["{\"text\":\"héllo\"}", "x\ny", "[DONE]"];
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            decoder.push(&bytes[..split]);
            events.extend(decode_all(&mut decoder));
            decoder.push(&bytes[split..]);
            events.extend(decode_all(&mut decoder));
            assert_eq!(events, expected, "split at byte {split}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let text = "data: a\r\n\r\ndata: b\n\n";
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for byte in text.as_bytes() {
            decoder.push(std::slice::from_ref(byte));
            events.extend(decode_all(&mut decoder));
        }
        assert_eq!(events, vec!["a", "b"]);
    }

    #[test]
    fn an_event_is_not_dispatched_before_its_blank_line_unless_the_stream_ended() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: last");
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.end();
        assert_eq!(decoder.next_event(), Ok(Some("last".to_string())));
        assert_eq!(decoder.next_event(), Ok(None));
    }

    #[test]
    fn a_trailing_cr_waits_for_a_possible_lf() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: a\r");
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.push(b"\n\r\n");
        assert_eq!(decoder.next_event(), Ok(Some("a".to_string())));
    }

    #[test]
    fn a_blank_line_without_data_dispatches_nothing() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"event: ping\n\n\n");
        assert_eq!(decoder.next_event(), Ok(None));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: \xff\xfe\n\n");
        let error = decoder.next_event().expect_err("not UTF-8");
        assert!(error.contains("not UTF-8"), "{error}");
    }
}
