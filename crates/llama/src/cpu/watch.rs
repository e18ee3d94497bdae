//! Which backend libraries ggml loaded, from its own log. ggml opens every CPU variant to score it,
//! and the libraries stay mapped after it closes them (they hold unique C++ symbols, so the dynamic
//! loader never unloads them): the log line ggml writes for the winner is the only record of it.

use std::path::PathBuf;
use std::sync::Mutex;

use tracing::dispatcher::{self, Dispatch};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The target llama-cpp-2 gives the llama.cpp and ggml log lines it forwards to `tracing`.
const LLAMA_TARGET: &str = "llama-cpp-2";
/// What ggml's `load_backend` writes before the path of the library it registered.
const LOADED: &str = "loaded CPU backend from ";

/// Runs `load`, passing every log event on to the process's subscriber, and returns the libraries
/// ggml said it loaded as CPU backends.
pub(super) fn loaded_libraries(
    load: impl FnOnce() -> Result<(), String>,
) -> Result<Vec<PathBuf>, String> {
    let outer = dispatcher::get_default(Dispatch::clone);
    let watch = Dispatch::new(Watch {
        outer,
        loaded: Mutex::new(Vec::new()),
    });
    dispatcher::with_default(&watch, load)?;
    let watch = watch
        .downcast_ref::<Watch>()
        .expect("the dispatcher holds a Watch");
    let loaded = watch
        .loaded
        .lock()
        .map_err(|_| "the CPU backend log watch failed".to_string())?;
    Ok(loaded.clone())
}

/// A subscriber in front of the process's own: it sees llama.cpp's log lines whatever the filter
/// and forwards everything the outer subscriber wants.
struct Watch {
    outer: Dispatch,
    loaded: Mutex<Vec<PathBuf>>,
}

impl Subscriber for Watch {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == LLAMA_TARGET {
            Interest::always()
        } else {
            self.outer.register_callsite(metadata)
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == LLAMA_TARGET || self.outer.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.outer.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.outer.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.outer.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == LLAMA_TARGET {
            let mut message = Message(None);
            event.record(&mut message);
            let path = message
                .0
                .as_deref()
                .and_then(|text| text.strip_prefix(LOADED))
                .map(|path| PathBuf::from(path.trim_end()));
            if let (Some(path), Ok(mut loaded)) = (path, self.loaded.lock()) {
                loaded.push(path);
            }
        }
        if self.outer.enabled(event.metadata()) {
            self.outer.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.outer.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.outer.exit(span);
    }
}

/// The `message` field of an event.
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
