//! Progress notifications: build steps and bytes pushed, sent to the client in order through
//! one forwarding task (the build and the copy engine report from their own threads).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_build::Event;
use berth_oci::Digest;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc;

/// Sends progress for one tool call (nothing when the client asked for none).
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    tx: Option<mpsc::UnboundedSender<String>>,
}

impl Notifier {
    /// A notifier for the call whose `_meta` holds `token`.
    pub(crate) fn new(peer: Peer<RoleServer>, token: Option<ProgressToken>) -> Notifier {
        let Some(token) = token else {
            return Notifier { tx: None };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut n = 0.0_f64;
            while let Some(message) = rx.recv().await {
                n += 1.0;
                let param = ProgressNotificationParam::new(token.clone(), n).with_message(message);
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        Notifier { tx: Some(tx) }
    }

    /// One message.
    pub(crate) fn say(&self, message: impl Into<String>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(message.into());
        }
    }
}

/// Build events as progress messages (steps, cache hits, finished steps; not RUN's output).
#[derive(Debug)]
pub(crate) struct BuildNotifier(pub(crate) Notifier);

impl berth_build::Progress for BuildNotifier {
    fn event(&self, e: Event) {
        match e {
            Event::Step {
                id,
                platform,
                position,
                text,
            } => {
                let first = text.lines().next().unwrap_or("");
                self.0.say(format!("#{id} [{platform} {position}] {first}"));
            }
            Event::Cached { id } => self.0.say(format!("#{id} CACHED")),
            Event::Done { id, seconds } => self.0.say(format!("#{id} DONE {seconds:.1}s")),
            Event::Pull {
                reference,
                platform,
            } => self.0.say(format!("fetching {reference} for {platform}")),
            _ => {}
        }
    }
}

/// Bytes pushed, at most one message per MiB and one per blob.
#[derive(Debug)]
pub(crate) struct TransferNotifier {
    pub(crate) notifier: Notifier,
    pub(crate) total: AtomicU64,
    pub(crate) done: AtomicU64,
    pub(crate) last: Mutex<u64>,
}

impl TransferNotifier {
    pub(crate) fn new(notifier: Notifier) -> Self {
        TransferNotifier {
            notifier,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last: Mutex::new(0),
        }
    }

    fn report(&self, force: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if force || done >= *last + (1 << 20) {
            *last = done;
            self.notifier.say(format!("pushed {done} of {total} bytes"));
        }
    }
}

impl berth_client::Progress for TransferNotifier {
    fn blob_started(&self, _digest: &Digest, size: u64, skipped: bool) {
        if !skipped {
            self.total.fetch_add(size, Ordering::Relaxed);
        }
    }

    fn blob_advanced(&self, _digest: &Digest, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        self.report(false);
    }

    fn blob_done(&self, _digest: &Digest) {
        self.report(true);
    }
}
