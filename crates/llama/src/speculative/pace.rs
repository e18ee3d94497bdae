//! When speculation pays: draft lengths that follow the acceptance history and what each length
//! costs on this machine, and a fallback to plain decoding of the target when speculative steps
//! yield fewer tokens per second than plain ones, probing again later.
//!
//! [`Pace`] keeps the cost of a plain step (a moving average, refreshed by an occasional plain
//! step), a window of recent speculative steps and the acceptance; when the window's milliseconds
//! per token exceed a plain step's, it falls back for a number of steps that doubles each time a
//! probe fails. With a draft model it is shared by a pipeline's requests, since whether drafting
//! pays then depends on the hardware, the pair and the load more than on one request; with
//! lookups (prompt lookup, the suffix cache) each request has its own, since whether its text
//! repeats is its own matter: a request that finds nothing to copy must not stop the next one, a
//! repeat of an earlier request, from drafting.
//!
//! The draft length: a request's own schedule ([`next_draft_length`]) proposes a length, and
//! [`Costs::draft_length`] may shorten it to the length with the most expected tokens per
//! millisecond, from the measured cost of a target evaluation of each size and of a draft step
//! (shared by the pipeline's requests: they are the machine's) and the acceptance. A target
//! evaluation's cost is not proportional to its size on a CPU: with Qwen2.5-Coder-1.5B on two
//! cores, 7 tokens cost 184 ms and 8 cost 273 ms, where one costs 34 (`tandem bench speculative`
//! reports the table).

use std::collections::VecDeque;
use std::sync::Mutex;

/// Most recent speculative steps compared against plain decoding.
const WINDOW: usize = 8;
/// Fewest speculative steps in the window before it decides: a probe costs this many steps.
const DECIDE_AFTER: usize = 3;
/// Weight of a new measurement in the moving averages of costs and acceptance.
const NEW_WEIGHT: f64 = 0.2;
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
    /// The probability that a drafted token stands, given the ones before it stood.
    acceptance: Option<f64>,
}

/// What evaluations cost on this machine, shared by a pipeline's requests.
#[derive(Default)]
pub struct Costs {
    state: Mutex<CostState>,
}

#[derive(Default)]
struct CostState {
    /// Milliseconds of a target evaluation of `n` tokens, at index `n - 1`.
    verify_ms: Vec<Option<f64>>,
    /// Milliseconds of a draft model's one-token step (its catching up left out).
    draft_ms: Option<f64>,
}

impl CostState {
    /// Milliseconds of a step that drafts `d` tokens and verifies them with one more (`d = 0`: a
    /// plain step); `None` until an evaluation of `d + 1` tokens was measured.
    fn step_ms(&self, d: usize) -> Option<f64> {
        let verify = self.verify_ms.get(d).copied().flatten()?;
        Some(verify + d as f64 * self.draft_ms.unwrap_or(0.0))
    }
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
                acceptance: None,
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
                s.plain_ms_per_token = Some(moving(s.plain_ms_per_token, per_token));
            }
            Mode::Speculate => {
                s.window.push_back((ms, tokens));
                if s.window.len() > WINDOW {
                    s.window.pop_front();
                }
                let Some(plain) = s.plain_ms_per_token else {
                    return;
                };
                if s.window.len() < DECIDE_AFTER {
                    return;
                }
                let (ms, tokens) = s
                    .window
                    .iter()
                    .fold((0.0, 0usize), |(m, t), &(ms, n)| (m + ms, t + n));
                if ms / tokens as f64 > plain {
                    tracing::debug!(
                        plain,
                        speculative = ms / tokens as f64,
                        "drafting does not pay; plain decoding for a while"
                    );
                    back_off(&mut s);
                } else {
                    s.backoff = FIRST_BACKOFF;
                }
            }
        }
    }

    /// Falls back to plain decoding now (unless already falling back, or the fallback is off):
    /// drafting cannot pay at any acceptance ([`Costs::ceiling`]).
    pub fn cannot_pay(&self) {
        if !self.enabled {
            return;
        }
        let mut s = self.state.lock().expect("pace lock");
        if s.plain_until.is_some_and(|until| s.step < until) {
            return;
        }
        tracing::debug!(
            "drafting cannot pay even if every draft stands; plain decoding for a while"
        );
        back_off(&mut s);
    }

    /// `accepted` of `drafted` tokens stood.
    pub fn record_acceptance(&self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        // Each step's tokens stood in a row until the first rejection, if any.
        let rejected = usize::from(accepted < drafted);
        let rate = accepted as f64 / (accepted + rejected) as f64;
        let mut s = self.state.lock().expect("pace lock");
        s.acceptance = Some(moving(s.acceptance, rate));
    }

    /// The moving average of the acceptance, once anything was drafted.
    pub fn acceptance(&self) -> Option<f64> {
        self.state.lock().expect("pace lock").acceptance
    }

    /// Whether the pipeline is decoding plainly now because drafting did not pay.
    pub fn falling_back(&self) -> bool {
        let s = self.state.lock().expect("pace lock");
        s.plain_until.is_some_and(|until| s.step < until)
    }
}

impl Costs {
    /// A target evaluation of `n` tokens took `ms`; a draft model's one-token step took
    /// `draft_ms` (`None` for a draft source without a model, or a step that ran none).
    pub fn record(&self, n: usize, ms: f64, draft_ms: Option<f64>) {
        let mut s = self.state.lock().expect("costs lock");
        if s.verify_ms.len() < n {
            s.verify_ms.resize(n, None);
        }
        s.verify_ms[n - 1] = Some(moving(s.verify_ms[n - 1], ms));
        if let Some(draft_ms) = draft_ms {
            s.draft_ms = Some(moving(s.draft_ms, draft_ms));
        }
    }

    /// The best ratio to plain decoding that any measured draft length could reach if every draft
    /// stood: `d + 1` tokens per evaluation of `d + 1` tokens and `d` draft steps, against `d + 1`
    /// plain steps. `None` until a plain step and a speculative one were measured. Under 1, drafting
    /// cannot pay on this machine, whatever the acceptance.
    pub fn ceiling(&self) -> Option<f64> {
        let s = self.state.lock().expect("costs lock");
        let plain = s.step_ms(0)?;
        (1..s.verify_ms.len())
            .filter_map(|d| Some((d + 1) as f64 * plain / s.step_ms(d)?))
            .max_by(f64::total_cmp)
    }

    /// The draft length to use when a request's schedule proposes `proposed` and drafted tokens
    /// stand with probability `acceptance`: the length up to it with the most expected tokens per
    /// millisecond, among lengths whose cost is known; the proposal itself while its cost is
    /// unknown (so it gets measured) or nothing was drafted yet.
    pub fn draft_length(&self, proposed: usize, acceptance: Option<f64>) -> usize {
        let s = self.state.lock().expect("costs lock");
        let Some(alpha) = acceptance else {
            return proposed;
        };
        if s.step_ms(proposed).is_none() {
            return proposed;
        }
        (1..=proposed)
            .filter_map(|d| Some((d, expected_tokens(alpha, d) / s.step_ms(d)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(proposed, |(d, _)| d)
    }
}

/// Plain decoding for the current backoff, which doubles for the next time.
fn back_off(s: &mut State) {
    s.plain_until = Some(s.step + s.backoff);
    s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
}

/// A moving average with [`NEW_WEIGHT`] on `new`.
fn moving(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(old) => (1.0 - NEW_WEIGHT) * old + NEW_WEIGHT * new,
        None => new,
    }
}

/// Tokens a step emits on average when it drafts `d` tokens that each stand with probability
/// `alpha` (given the ones before stood): the accepted run plus the target's own token,
/// `(1 - alpha^(d+1)) / (1 - alpha)`.
fn expected_tokens(alpha: f64, d: usize) -> f64 {
    let alpha = alpha.clamp(0.0, 0.999);
    (1.0 - alpha.powi(d as i32 + 1)) / (1.0 - alpha)
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
        // A third speculative step fills the window to DECIDE_AFTER steps, at 100 ms per token
        // against 50 for plain ones.
        assert_eq!(DECIDE_AFTER, 3);
        assert!(!pace.falling_back());
        assert_eq!(pace.next_mode(), Mode::Speculate);
        pace.record(Mode::Speculate, 100.0, 1);
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
    fn drafting_that_cannot_pay_falls_back_at_once() {
        let pace = Pace::new(true);
        assert_eq!(pace.next_mode(), Mode::Speculate);
        pace.cannot_pay();
        assert!(pace.falling_back());
        assert_eq!(pace.next_mode(), Mode::Plain);
        // Already falling back: the backoff is not doubled again.
        pace.cannot_pay();
        let plain = (0..4 * FIRST_BACKOFF)
            .take_while(|_| pace.next_mode() == Mode::Plain)
            .count() as u64;
        assert_eq!(plain, FIRST_BACKOFF - 2);
        // Without the fallback, nothing changes.
        let always = Pace::new(false);
        always.cannot_pay();
        assert!(!always.falling_back());
    }

    /// Costs shaped as measured on two cores: one token 53 ms, seven 194, eight 285, nine 305.
    fn measured_costs(draft_ms: Option<f64>) -> Costs {
        let costs = Costs::default();
        let ms = [53.0, 81.0, 109.0, 126.0, 148.0, 171.0, 194.0, 285.0, 305.0];
        for (i, &ms) in ms.iter().enumerate() {
            costs.record(i + 1, ms, draft_ms);
        }
        costs
    }

    /// The acceptance after steps that each had `accepted` of 8 drafts stand.
    fn acceptance(accepted: usize) -> Option<f64> {
        let pace = Pace::new(true);
        for _ in 0..10 {
            pace.record_acceptance(8, accepted);
        }
        pace.acceptance()
    }

    #[test]
    fn the_draft_length_avoids_costly_evaluation_sizes() {
        let lookups = measured_costs(None);
        // Drafts that nearly always stand: eight drafts (nine tokens) cost more per token than
        // six (seven tokens).
        assert_eq!(lookups.draft_length(8, acceptance(8)), 6);
        assert_eq!(lookups.draft_length(4, acceptance(8)), 4);
        // Drafts that often fail early: shorter ones pay better.
        let poor = lookups.draft_length(8, acceptance(1));
        assert!(poor <= 2, "{poor}");
        // An expensive draft model shortens drafts further than free lookups.
        let model = measured_costs(Some(60.0)).draft_length(8, acceptance(4));
        assert!(model < lookups.draft_length(8, acceptance(4)), "{model}");
        // Free drafts can pay (seven tokens for 194 ms against 7 x 53); a draft model whose step
        // costs 60 ms cannot, even if every draft stood.
        assert!(lookups.ceiling().unwrap() > 1.0);
        assert!(measured_costs(Some(60.0)).ceiling().unwrap() < 1.0);
        assert_eq!(Costs::default().ceiling(), None);
        // Nothing drafted yet, or nothing measured at the proposed length: tried as proposed.
        assert_eq!(lookups.draft_length(5, None), 5);
        let fresh = Costs::default();
        fresh.record(1, 53.0, None);
        assert_eq!(fresh.draft_length(5, acceptance(8)), 5);
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
