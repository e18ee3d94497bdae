//! When speculation pays: draft lengths that follow the acceptance history, and a fallback to
//! plain decoding of the target when speculative steps yield fewer tokens per second than plain
//! ones, probing again later.
//!
//! [`Pace`] is shared by a pipeline's requests, since whether drafting pays depends on the
//! hardware, the pair and the load more than on one request. It keeps the cost of a plain step
//! (a moving average, refreshed by an occasional plain step) and a window of recent speculative
//! steps; when the window's milliseconds per token exceed a plain step's, it falls back for a
//! number of steps that doubles each time a probe fails.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Speculative steps compared against plain decoding at once.
const WINDOW: usize = 8;
/// Steps of plain decoding after the first failed comparison; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: u64 = 16;
const MAX_BACKOFF: u64 = 512;
/// While speculating, one plain step in this many keeps the plain cost current.
const PLAIN_REFRESH: u64 = 64;

/// What the next step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Speculate,
    Plain,
}

pub struct Pace {
    enabled: bool,
    state: Mutex<State>,
}

struct State {
    step: u64,
    plain_ms_per_token: Option<f64>,
    window: VecDeque<(f64, usize)>,
    plain_until: Option<u64>,
    backoff: u64,
    last_plain: u64,
}

impl Pace {
    /// `enabled: false` always speculates (for measuring speculation alone).
    pub fn new(enabled: bool) -> Self {
        Pace {
            enabled,
            state: Mutex::new(State {
                step: 0,
                plain_ms_per_token: None,
                window: VecDeque::new(),
                plain_until: None,
                backoff: FIRST_BACKOFF,
                last_plain: 0,
            }),
        }
    }

    pub fn next_mode(&self) -> Mode {
        if !self.enabled {
            return Mode::Speculate;
        }
        let mut s = self.state.lock().expect("pace lock");
        s.step += 1;
        if let Some(until) = s.plain_until {
            if s.step < until {
                return Mode::Plain;
            }
            // Probe: a fresh window of speculative steps decides again.
            s.plain_until = None;
            s.window.clear();
        }
        let stale = s.step - s.last_plain >= PLAIN_REFRESH;
        if (s.plain_ms_per_token.is_none() && s.window.len() >= 2) || stale {
            s.last_plain = s.step;
            return Mode::Plain;
        }
        Mode::Speculate
    }

    /// A step of `mode` took `ms` and emitted `tokens`.
    pub fn record(&self, mode: Mode, ms: f64, tokens: usize) {
        if !self.enabled || tokens == 0 {
            return;
        }
        let mut s = self.state.lock().expect("pace lock");
        match mode {
            Mode::Plain => {
                let per_token = ms / tokens as f64;
                s.plain_ms_per_token = Some(match s.plain_ms_per_token {
                    Some(old) => 0.8 * old + 0.2 * per_token,
                    None => per_token,
                });
            }
            Mode::Speculate => {
                s.window.push_back((ms, tokens));
                if s.window.len() > WINDOW {
                    s.window.pop_front();
                }
                let Some(plain) = s.plain_ms_per_token else {
                    return;
                };
                if s.window.len() < WINDOW {
                    return;
                }
                let (ms, tokens) = s
                    .window
                    .iter()
                    .fold((0.0, 0usize), |(m, t), &(ms, n)| (m + ms, t + n));
                if ms / tokens as f64 > plain {
                    s.plain_until = Some(s.step + s.backoff);
                    s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
                    tracing::debug!(
                        plain,
                        speculative = ms / tokens as f64,
                        "drafting does not pay; plain decoding for a while"
                    );
                } else {
                    s.backoff = FIRST_BACKOFF;
                }
            }
        }
    }

    /// Whether the pipeline is decoding plainly now because drafting did not pay.
    pub fn falling_back(&self) -> bool {
        let s = self.state.lock().expect("pace lock");
        s.plain_until.is_some_and(|until| s.step < until)
    }
}

/// The next draft length from the last step's: longer after a fully accepted draft, shorter
/// after a rejection (the "heuristic" schedule of Hugging Face's assisted generation).
pub fn next_draft_length(current: usize, drafted: usize, accepted: usize, max: usize) -> usize {
    if drafted == 0 {
        return current;
    }
    if accepted == drafted {
        (current + 2).min(max)
    } else {
        current.saturating_sub(1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_speculation_falls_back_and_probes_again() {
        let pace = Pace::new(true);
        // Two speculative steps, then a plain one to learn its cost.
        for _ in 0..2 {
            assert_eq!(pace.next_mode(), Mode::Speculate);
            pace.record(Mode::Speculate, 100.0, 1);
        }
        assert_eq!(pace.next_mode(), Mode::Plain);
        pace.record(Mode::Plain, 50.0, 1);
        // Speculative steps at 100 ms per token against 50 for plain ones.
        for _ in 0..6 {
            assert_eq!(pace.next_mode(), Mode::Speculate);
            pace.record(Mode::Speculate, 100.0, 1);
        }
        assert!(pace.falling_back());
        let plain = (0..FIRST_BACKOFF)
            .take_while(|_| pace.next_mode() == Mode::Plain)
            .count();
        assert_eq!(plain as u64, FIRST_BACKOFF - 1);
        assert!(!pace.falling_back());
        // The probe speculates again; fast steps keep it there.
        for _ in 0..WINDOW {
            pace.record(Mode::Speculate, 30.0, 2);
        }
        assert!(!pace.falling_back());
        assert_eq!(pace.next_mode(), Mode::Speculate);
    }

    #[test]
    fn draft_length_grows_on_success_and_shrinks_on_rejection() {
        assert_eq!(next_draft_length(4, 4, 4, 8), 6);
        assert_eq!(next_draft_length(7, 7, 7, 8), 8);
        assert_eq!(next_draft_length(4, 4, 1, 8), 3);
        assert_eq!(next_draft_length(1, 1, 0, 8), 1);
        assert_eq!(next_draft_length(5, 0, 0, 8), 5);
    }
}
