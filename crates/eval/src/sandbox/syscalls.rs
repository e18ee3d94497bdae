//! The system calls sandboxed code may not make, and the one place a sandboxed run is started:
//! on a thread of its own that installs a seccomp filter first, so that only the run (which
//! inherits the filter across fork and exec) is filtered, never Tandem's other threads.
//!
//! Refused with EPERM, at every isolation level:
//! - `socket` of every family: a pathname Unix socket of the host can be reached through a
//!   read-only mount, and the code needs no socket at all (the namespaced levels have no network
//!   anyway; without namespaces this is what keeps the code off the network);
//! - `socketpair`, but for the one kind Rust's own `Command::spawn` makes on the filtered thread
//!   (`AF_UNIX`, `SOCK_SEQPACKET | SOCK_CLOEXEC`, to pass a pidfd back): such a pair is connected
//!   to nothing but itself, so it reaches nothing outside the run;
//! - `io_uring_setup`, `io_uring_enter`, `io_uring_register`: io_uring can open sockets without
//!   `socket()`;
//! - `ptrace`, `process_vm_readv`, `process_vm_writev`, `pidfd_getfd`: a process may not read or
//!   change another of the same uid (the HumanEval runner keeps a secret marker in memory while
//!   the candidate runs beside it).
//!
//! The wrapper that sets up the namespaces (`unshare`, `mount`, `cp`, `setpriv`, `prlimit`) runs
//! under the filter too; it needs none of these calls.

use std::collections::BTreeMap;
use std::sync::mpsc;

use nix::libc;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use tokio::process::{Child, Command};

use crate::error::EvalError;

const REFUSED: [i64; 8] = [
    libc::SYS_socket,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
];

/// A started run. The thread that started it lives as long as this value: without a PID namespace
/// the interpreter is tied to that thread (`setpriv --pdeathsig` fires when it ends).
pub(super) struct Spawned {
    pub child: Child,
    _spawner: mpsc::Sender<()>,
}

/// Spawns `command` from a new thread that first installs the filter (and `no_new_privs`) on
/// itself. Must be called within a Tokio runtime, which the child is registered with.
pub(super) async fn spawn_filtered(command: Command) -> Result<Spawned, EvalError> {
    let filter = filter()?;
    let runtime = tokio::runtime::Handle::current();
    let (started, start_result) = tokio::sync::oneshot::channel();
    let (spawner, run_ended) = mpsc::channel::<()>();
    let mut command = command;
    std::thread::Builder::new()
        .name("tandem-sandbox-spawn".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            let result = seccompiler::apply_filter(&filter)
                .map_err(|e| EvalError::Sandbox(format!("cannot install the seccomp filter: {e}")))
                .and_then(|()| {
                    command.spawn().map_err(|e| EvalError::Command {
                        command: "unshare/prlimit".into(),
                        message: format!("cannot start the sandbox: {e}"),
                    })
                });
            let running = result.is_ok();
            if started.send(result).is_ok() && running {
                // Err once the run's `Spawned` is dropped, that is when the run is over.
                let _ = run_ended.recv();
            }
        })
        .map_err(|e| EvalError::Sandbox(format!("cannot start a thread for the sandbox: {e}")))?;
    let child = start_result
        .await
        .map_err(|_| EvalError::Sandbox("the sandbox's spawning thread died".into()))??;
    Ok(Spawned {
        child,
        _spawner: spawner,
    })
}

fn filter() -> Result<BpfProgram, EvalError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| EvalError::Sandbox(format!("no seccomp filter for this architecture: {e}")))?;
    let mut rules = REFUSED
        .iter()
        .map(|&call| (call, Vec::new()))
        .collect::<BTreeMap<_, _>>();
    // Rules are alternatives: a pair of another family, or of another type, is refused.
    let spawns_pair = (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC) as u64;
    let unless = |arg: u8, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value)
            .and_then(|condition| SeccompRule::new(vec![condition]))
            .map_err(|e| EvalError::Sandbox(format!("cannot build the seccomp filter: {e}")))
    };
    rules.insert(
        libc::SYS_socketpair,
        vec![unless(0, libc::AF_UNIX as u64)?, unless(1, spawns_pair)?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| EvalError::Sandbox(format!("cannot build the seccomp filter: {e}")))?;
    filter.try_into().map_err(|e: BackendError| {
        EvalError::Sandbox(format!("cannot compile the seccomp filter: {e}"))
    })
}
