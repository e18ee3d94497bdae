//! Runs untrusted programs (model-written code) in a subprocess that cannot reach the network,
//! cannot write outside its own temporary directory and cannot exhaust the machine. Nothing
//! untrusted ever runs in Tandem's own process.
//!
//! How each guarantee is made, with [`Isolation::Full`] (what root gets on Linux):
//! - **wall clock**: the child is the leader of a new process group; when [`Limits::wall`] runs
//!   out the whole group is killed with SIGKILL. The code also runs in a PID namespace whose init
//!   is our wrapper shell, so anything that left the group dies with the namespace.
//! - **CPU, memory, files, processes**: `prlimit` sets RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE,
//!   RLIMIT_NOFILE, RLIMIT_NPROC (and no core dumps) right before it execs the interpreter.
//!   RLIMIT_NPROC counts the processes of a *user*, so every run gets a uid of its own (see
//!   [`sandbox_uid`]), entered with `setpriv` (no supplementary groups, `no_new_privs`). That uid owns
//!   nothing on the machine, which is also why it cannot write to any file but its own.
//! - **network**: a new, empty network namespace (`unshare --net`): not even loopback is up.
//! - **writes**: a private mount namespace in which every filesystem that could hold new files is
//!   remounted read-only, except the run's directory: a tmpfs mounted over the temporary
//!   directory in that namespace only ([`Limits::work_dir_bytes`], [`Limits::work_dir_inodes`]),
//!   owned by the run's uid, into which the program is copied; so many files each under
//!   RLIMIT_FSIZE cannot fill the disk either. World-writable places (`/tmp`, `/dev/shm`) are
//!   read-only there too, so the unprivileged uid has nowhere else to write.
//! - **other processes**: `/proc` is hidden behind an empty read-only tmpfs, so no process of
//!   the run can read the memory, environment or file descriptors of another (the HumanEval
//!   runner's marker, say); `ptrace`, `process_vm_readv`/`process_vm_writev` and `pidfd_getfd`
//!   are refused by a seccomp filter (see `syscalls`).
//! - **sockets**: the same filter refuses `socket()` (and `socketpair()`, io_uring), at every
//!   level: a read-only mount does not stop `connect()` to a Unix socket of the host.
//! - **cleanup**: the temporary directory is removed when the run ends, whatever the outcome; the
//!   environment is cleared (only `PATH`, `HOME`, `TMPDIR`, `LANG` are set) and stdin is empty.
//!   If Tandem itself dies mid-run, the wrapper sees its lifeline pipe close and kills the run, so
//!   nothing outlives the process that started it.
//!
//! [`Sandbox::detect`] probes what the machine allows and falls back, with a warning for each
//! guarantee lost, to [`Isolation::UserNamespace`] (not root: the same namespaces, with the code
//! as root of its own user namespace stripped of every capability; the code keeps the caller's
//! uid, so the process limit counts all of the caller's processes). It does not fall back to
//! [`Isolation::LimitsOnly`] (resource limits, the timeout and the seccomp filter only: the code
//! can write wherever the caller can) unless the caller allows it explicitly; it refuses instead.
//! The level is part of [`Sandbox::describe`], which is recorded with every run.

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::error::EvalError;
use syscalls::spawn_filtered;

mod syscalls;

/// The `PATH` the wrapper and the sandboxed code see.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// At most this many bytes of each of stdout and stderr are kept (the end, where tracebacks are).
const OUTPUT_CAP: usize = 32 * 1024;
/// The wrapper exits with this code, after a line starting with [`SETUP_MARKER`] on stderr, when
/// the sandbox itself could not be set up.
const SETUP_FAILED: i32 = 97;
const SETUP_MARKER: &str = "tandem-sandbox:";

/// Runs as PID 1 of the new namespaces, as root (real or namespaced): makes the filesystem
/// read-only but for the work directory, drops to the run's uid, runs the command and exits with
/// its status. Arguments: work directory, uid (`-` to keep the current one), the work directory's
/// size and inode limits, command.
const WRAPPER: &str = r#"
work=$1 uid=$2 size=$3 inodes=$4
shift 4
fail() { echo "tandem-sandbox: $*" >&2; exit 97; }
# The run works in a tmpfs of its own, limited in size and inodes, so that many files each under
# RLIMIT_FSIZE cannot fill the disk. It exists only in this mount namespace and goes with it.
# The shell stays in the directory underneath, to copy the program in.
cd "$work" || fail "cannot enter $work"
owner=
[ "$uid" = - ] || owner=",uid=$uid,gid=$uid"
mount -t tmpfs -o "size=$size,nr_inodes=$inodes,mode=0700$owner" tandem-work "$work" \
    || fail "cannot mount a tmpfs on $work"
cp -- ./* "$work"/ || fail "cannot copy the program into $work"
[ "$uid" = - ] || chown -R "$uid:$uid" "$work" || fail "cannot give $work to $uid"
seen=" $work "
while read -r _ _ _ _ point options rest; do
    case "$rest" in "- "*) fstype=${rest#- } ;; *) fstype=${rest#* - } ;; esac
    fstype=${fstype%% *}
    # Kernel filesystems where an unprivileged user cannot create files stay as they are.
    case "$fstype" in
        proc|sysfs|cgroup|cgroup2|devpts|devtmpfs|securityfs|debugfs|tracefs|bpf|pstore|configfs|fusectl|hugetlbfs|binfmt_misc|autofs) continue ;;
    esac
    case ",$options," in *,ro,*) continue ;; esac
    case "$point" in *\\*) point=$(printf '%b' "$point") ;; esac
    case "$seen" in *" $point "*) continue ;; esac
    seen="$seen$point "
    mount -o remount,bind,ro "$point" || fail "cannot make $point read-only"
done < /proc/self/mountinfo
# No sandboxed process may read another one's memory, environment or descriptors (where the
# HumanEval runner keeps its marker): /proc is hidden behind an empty read-only tmpfs.
mount -t tmpfs -o ro,size=4k,nr_inodes=1,mode=0555 tandem-no-proc /proc || fail "cannot hide /proc"
cd "$work" || fail "cannot enter $work"
unset OLDPWD PWD
# The command runs in the background so that this shell can also watch its stdin, a pipe whose
# other end Tandem holds until the run ends. End of file there means Tandem is gone (killed, say):
# the command is killed, this shell exits and the PID namespace takes everything left with it.
exec 3<&0
# Every capability goes: root of a user namespace could otherwise remount the filesystem
# read-write or undo the hidden /proc.
drop="--bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs"
if [ "$uid" = - ]; then
    setpriv $drop -- "$@" </dev/null 3<&- &
else
    setpriv --reuid="$uid" --regid="$uid" --clear-groups $drop -- "$@" </dev/null 3<&- &
fi
command=$!
(while read -r _; do :; done; kill -KILL "$command") <&3 2>/dev/null &
exec 3<&-
wait "$command"
exit $?
"#;

/// Resource limits of one sandboxed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time, after which the whole process tree is killed.
    pub wall: Duration,
    /// CPU seconds (RLIMIT_CPU); the kernel kills the process when they are used up.
    pub cpu_seconds: u64,
    /// Address space in bytes (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes and threads (RLIMIT_NPROC) of the run's own uid.
    pub processes: u64,
    /// Largest file the code may write (RLIMIT_FSIZE).
    pub file_size_bytes: u64,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Size of the run's directory, a tmpfs of its own (not enforced by [`Isolation::LimitsOnly`]).
    pub work_dir_bytes: u64,
    /// Files and directories the run's directory can hold (not enforced by
    /// [`Isolation::LimitsOnly`]).
    pub work_dir_inodes: u64,
}

impl Default for Limits {
    /// Roomy enough for any HumanEval solution (the official harness allows 3 s), tight enough
    /// that a runaway program costs seconds, not the machine.
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(10),
            cpu_seconds: 10,
            memory_bytes: 1 << 30,
            processes: 16,
            file_size_bytes: 16 << 20,
            open_files: 64,
            work_dir_bytes: 64 << 20,
            work_dir_inodes: 4096,
        }
    }
}

/// How strongly the machine lets us isolate sandboxed code (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    Full,
    UserNamespace,
    LimitsOnly,
}

impl Isolation {
    fn name(self) -> &'static str {
        match self {
            Isolation::Full => "full (namespaces and a uid per run)",
            Isolation::UserNamespace => "user-namespace",
            Isolation::LimitsOnly => "limits-only",
        }
    }

    /// What this level does not guarantee, one warning per lost guarantee.
    fn gaps(self) -> Vec<String> {
        let nproc = "the process limit counts every process of the user running Tandem, not only \
                     the sandboxed ones (run as root for a uid per run)"
            .to_string();
        match self {
            Isolation::Full => Vec::new(),
            Isolation::UserNamespace => vec![nproc],
            Isolation::LimitsOnly => vec![
                "NO NETWORK NAMESPACE: only the seccomp filter that refuses socket() keeps \
                 sandboxed code off the network (network namespaces are not available here)"
                    .into(),
                "NO FILESYSTEM ISOLATION: sandboxed code can write wherever the user running \
                 Tandem can, as many files as it likes, each under the file size limit (mount \
                 namespaces are not available here)"
                    .into(),
                nproc,
            ],
        }
    }
}

/// How a sandboxed program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Status {
    Exited {
        code: i32,
    },
    /// Killed by a signal: by the kernel at a limit (SIGKILL, SIGXCPU, SIGXFSZ) or by itself.
    Killed {
        signal: i32,
    },
    /// Killed by us when the wall-clock limit ran out.
    TimedOut,
}

/// The result of one sandboxed run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    pub status: Status,
    /// The end of stdout, lossily decoded.
    pub stdout: String,
    /// The end of stderr, lossily decoded.
    pub stderr: String,
    pub duration_ms: f64,
}

impl Execution {
    pub fn success(&self) -> bool {
        self.status == Status::Exited { code: 0 }
    }
}

/// A configured sandbox. Cheap to share; every run gets a fresh directory and uid.
#[derive(Debug, Clone)]
pub struct Sandbox {
    limits: Limits,
    isolation: Isolation,
    python: PathBuf,
    warnings: Vec<String>,
}

impl Sandbox {
    /// Finds the strongest isolation this machine allows for running `python` (default: the
    /// system's `/usr/bin/python3`, which any uid can run, else `python3` on `PATH`) by running a
    /// probe program at each level. Every guarantee that is lost is logged as a warning and kept
    /// in [`Sandbox::warnings`].
    /// Without `allow_unisolated`, a machine that offers neither namespaced level is refused.
    pub async fn detect(
        limits: Limits,
        python: Option<PathBuf>,
        allow_unisolated: bool,
    ) -> Result<Sandbox, EvalError> {
        let candidates: &[Isolation] = if nix::unistd::geteuid().is_root() {
            &[Isolation::Full, Isolation::UserNamespace]
        } else {
            &[Isolation::UserNamespace]
        };
        Sandbox::detect_among(candidates, limits, python, allow_unisolated).await
    }

    /// [`Sandbox::detect`] over the namespaced levels `candidates`, strongest first.
    async fn detect_among(
        candidates: &[Isolation],
        limits: Limits,
        python: Option<PathBuf>,
        allow_unisolated: bool,
    ) -> Result<Sandbox, EvalError> {
        let python = match python {
            Some(path) => path,
            None => default_python()?,
        };
        let unisolated = allow_unisolated.then_some(Isolation::LimitsOnly);
        let mut warnings = Vec::new();
        for &isolation in candidates.iter().chain(unisolated.iter()) {
            let sandbox = Sandbox {
                limits,
                isolation,
                python: python.clone(),
                warnings: Vec::new(),
            };
            match sandbox.probe().await {
                Ok(()) => {
                    warnings.extend(isolation.gaps());
                    for warning in &warnings {
                        tracing::warn!("sandbox: {warning}");
                    }
                    return Ok(Sandbox {
                        warnings,
                        ..sandbox
                    });
                }
                Err(e) => warnings.push(format!(
                    "{} isolation is not available on this machine: {e}",
                    isolation.name()
                )),
            }
        }
        let hint = if allow_unisolated {
            String::new()
        } else {
            "; refusing to run model-written code without namespaces (it would have a writable \
             filesystem and no network namespace): pass --allow-unisolated or set `[eval] allow_unisolated \
             = true` to run it with resource limits only"
                .to_string()
        };
        Err(EvalError::Sandbox(format!(
            "no isolated way to run {} here: {}{hint}",
            python.display(),
            warnings.join("; ")
        )))
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Every guarantee of the module docs that does not hold on this machine.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The sandbox's configuration, as recorded with each run's settings.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "isolation": self.isolation,
            "python": self.python,
            "wall_s": self.limits.wall.as_secs_f64(),
            "cpu_s": self.limits.cpu_seconds,
            "memory_bytes": self.limits.memory_bytes,
            "processes": self.limits.processes,
            "file_size_bytes": self.limits.file_size_bytes,
            "open_files": self.limits.open_files,
            "work_dir_bytes": self.limits.work_dir_bytes,
            "work_dir_inodes": self.limits.work_dir_inodes,
            "warnings": self.warnings,
        })
    }

    async fn probe(&self) -> Result<(), EvalError> {
        let marker = "tandem-sandbox-probe-ok";
        let run = self
            .run_python(&[("main.py", &format!("print({marker:?})"))], "main.py")
            .await?;
        if run.success() && run.stdout.contains(marker) {
            Ok(())
        } else {
            Err(EvalError::Sandbox(format!(
                "the probe program ended with {:?}: {}",
                run.status,
                run.stderr.trim()
            )))
        }
    }

    /// Writes `files` (plain names) into a fresh temporary directory and runs `python -I -B main`
    /// there under the sandbox. The directory is removed before this returns.
    pub async fn run_python(
        &self,
        files: &[(&str, &str)],
        main: &str,
    ) -> Result<Execution, EvalError> {
        let work = tempfile::Builder::new()
            .prefix("tandem-sandbox-")
            .tempdir()
            .map_err(EvalError::io(std::env::temp_dir()))?;
        let dir = work
            .path()
            .canonicalize()
            .map_err(EvalError::io(work.path()))?;
        for (name, text) in files {
            if name.contains('/') || name.starts_with('.') {
                return Err(EvalError::Sandbox(format!("bad file name `{name}`")));
            }
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(EvalError::io(&path))?;
        }
        let uid = (self.isolation == Isolation::Full).then(sandbox_uid);
        if let Some(uid) = uid {
            chown(&dir, Some(uid), Some(uid)).map_err(EvalError::io(&dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(EvalError::io(&dir))?;
        }
        let execution = self.spawn_and_wait(&dir, uid, main).await;
        work.close().map_err(EvalError::io(&dir))?;
        execution
    }

    fn command(&self, dir: &Path, uid: Option<u32>, main: &str) -> Command {
        let limits = self.limits;
        let inner: Vec<String> = vec![
            "prlimit".into(),
            format!("--as={}", limits.memory_bytes),
            format!("--cpu={}", limits.cpu_seconds),
            format!("--nproc={}", limits.processes),
            format!("--fsize={}", limits.file_size_bytes),
            format!("--nofile={}", limits.open_files),
            "--core=0".into(),
            "--".into(),
            self.python.display().to_string(),
            "-I".into(),
            "-B".into(),
            main.into(),
        ];
        let mut command = match self.isolation {
            Isolation::LimitsOnly => {
                // Without a PID namespace only the interpreter itself can be tied to our
                // lifetime: it gets SIGKILL when the thread that started it ends.
                let mut command = Command::new("setpriv");
                command
                    .args(["--pdeathsig", "KILL", "--"])
                    .args(inner)
                    .current_dir(dir)
                    .stdin(Stdio::null());
                command
            }
            Isolation::Full | Isolation::UserNamespace => {
                let mut command = Command::new("unshare");
                if self.isolation == Isolation::UserNamespace {
                    command.args(["--user", "--map-root-user"]);
                }
                command
                    .args([
                        "--net",
                        "--mount",
                        "--pid",
                        "--ipc",
                        "--fork",
                        "--kill-child",
                        "--mount-proc",
                        "--",
                        "/bin/sh",
                        "-c",
                        WRAPPER,
                        "tandem-sandbox",
                    ])
                    .arg(dir)
                    .arg(uid.map_or_else(|| "-".to_string(), |u| u.to_string()))
                    .arg(limits.work_dir_bytes.to_string())
                    .arg(limits.work_dir_inodes.to_string())
                    .args(inner)
                    .current_dir("/")
                    .stdin(Stdio::piped());
                command
            }
        };
        command
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("HOME", dir)
            .env("TMPDIR", dir)
            .env("LANG", "C.UTF-8")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    async fn spawn_and_wait(
        &self,
        dir: &Path,
        uid: Option<u32>,
        main: &str,
    ) -> Result<Execution, EvalError> {
        let started = Instant::now();
        // Kept until the run has ended: see `Spawned`.
        let mut spawned = spawn_filtered(self.command(dir, uid, main)).await?;
        let child = &mut spawned.child;
        let group = child.id();
        // Held until the run has ended; see the wrapper.
        let lifeline = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Readers get a grace period past the deadline: a killed tree closes its pipes at once,
        // but a process that escaped the group (possible only without namespaces) may not.
        let read_deadline = self.limits.wall + Duration::from_secs(2);
        let wall = self.limits.wall;
        let waiter = async {
            match tokio::time::timeout(wall, child.wait()).await {
                Ok(status) => status.map(Some),
                Err(_) => {
                    if let Some(group) = group {
                        kill_group(group);
                    }
                    child.wait().await.map(|_| None)
                }
            }
        };
        let (status, out, err) = tokio::join!(
            waiter,
            tokio::time::timeout(read_deadline, read_capped(stdout)),
            tokio::time::timeout(read_deadline, read_capped(stderr)),
        );
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(lifeline);
        drop(spawned);
        let status = status.map_err(|e| EvalError::Command {
            command: "unshare/prlimit".into(),
            message: format!("waiting for the sandbox failed: {e}"),
        })?;
        let stdout = String::from_utf8_lossy(&out.unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err.unwrap_or_default()).into_owned();
        let wrapped = self.isolation != Isolation::LimitsOnly;
        let status = match status {
            None => Status::TimedOut,
            Some(status) => decode_status(status, wrapped),
        };
        if wrapped
            && status == (Status::Exited { code: SETUP_FAILED })
            && stderr.contains(SETUP_MARKER)
        {
            return Err(EvalError::Sandbox(stderr.trim().to_string()));
        }
        Ok(Execution {
            status,
            stdout,
            stderr,
            duration_ms,
        })
    }
}

/// A uid that no one else uses, unique among the runs alive at once: derived from our process id
/// (so concurrent Tandem processes differ) and a counter (so concurrent runs in this process
/// differ), above the ranges that systems hand out to users and containers. RLIMIT_NPROC then
/// counts the processes of one run only, and the uid owns no file on the machine.
fn sandbox_uid() -> u32 {
    const BASE: u32 = 1_500_000_000;
    const PER_PROCESS: u32 = 64;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % PER_PROCESS;
    BASE + (std::process::id() % (1 << 20)) * PER_PROCESS + slot
}

fn default_python() -> Result<PathBuf, EvalError> {
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        return Ok(system);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("python3"))
        .find(|path| path.is_file())
        .ok_or_else(|| EvalError::Sandbox("no python3 found (install python3)".into()))
}

/// A wrapper shell reports a child killed by signal N as exit code 128 + N.
fn decode_status(status: ExitStatus, wrapped: bool) -> Status {
    if let Some(signal) = status.signal() {
        return Status::Killed { signal };
    }
    let code = status.code().unwrap_or(-1);
    if wrapped && (129..=128 + 64).contains(&code) {
        Status::Killed { signal: code - 128 }
    } else {
        Status::Exited { code }
    }
}

fn kill_group(group: u32) {
    let Ok(group) = i32::try_from(group) else {
        return;
    };
    // ESRCH (the group is already gone) is fine: there is nothing left to kill.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(group),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Reads a pipe to its end, keeping only the last [`OUTPUT_CAP`] bytes.
async fn read_capped(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buffer[..n]);
                if kept.len() > 2 * OUTPUT_CAP {
                    kept.drain(..kept.len() - OUTPUT_CAP);
                }
            }
        }
    }
    if kept.len() > OUTPUT_CAP {
        kept.drain(..kept.len() - OUTPUT_CAP);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sandbox(limits: Limits) -> Sandbox {
        let sandbox = Sandbox::detect(limits, None, false).await.unwrap();
        // These tests prove the guarantees of full isolation; as root on Linux (our CI) the
        // machine must provide it, so anything less is a failure, not a skip.
        assert_eq!(
            sandbox.isolation(),
            Isolation::Full,
            "{:?}",
            sandbox.warnings()
        );
        sandbox
    }

    /// Runs `program`; a run that does not end within a minute fails the test instead of hanging
    /// it (the sandbox's own timeout is what is under test).
    async fn run(sandbox: &Sandbox, program: &str) -> Execution {
        tokio::time::timeout(
            Duration::from_secs(60),
            sandbox.run_python(&[("main.py", program)], "main.py"),
        )
        .await
        .expect("the sandbox did not end the run")
        .unwrap()
    }

    fn pids_of_uid(uid: u32) -> Vec<String> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let real_uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string));
            if real_uid == Some(uid.to_string()) {
                pids.push(name);
            }
        }
        pids
    }

    /// Waits a moment for the kernel to finish tearing down a killed namespace, then lists
    /// whatever processes of `uid` are still there.
    async fn survivors(uid: u32) -> Vec<String> {
        for _ in 0..40 {
            if pids_of_uid(uid).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pids_of_uid(uid)
    }

    fn printed_uid(execution: &Execution) -> u32 {
        execution
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("uid "))
            .and_then(|u| u.trim().parse().ok())
            .unwrap_or_else(|| panic!("no uid printed: {execution:?}"))
    }

    #[tokio::test]
    async fn runs_as_an_unprivileged_uid_in_a_clean_environment() {
        let sandbox = sandbox(Limits::default()).await;
        let program = "import os\nprint('uid', os.getuid())\nprint('env', sorted(os.environ))\n";
        let execution = run(&sandbox, program).await;
        assert!(execution.success(), "{execution:?}");
        assert!(printed_uid(&execution) >= 1_500_000_000, "{execution:?}");
        assert!(
            execution
                .stdout
                .contains("env ['HOME', 'LANG', 'PATH', 'TMPDIR']"),
            "{execution:?}"
        );
    }

    #[tokio::test]
    async fn an_infinite_loop_is_killed_at_the_cpu_limit() {
        let limits = Limits {
            cpu_seconds: 1,
            wall: Duration::from_secs(30),
            ..Limits::default()
        };
        let execution = run(&sandbox(limits).await, "while True:\n    pass\n").await;
        assert!(
            matches!(execution.status, Status::Killed { signal } if signal == 9 || signal == 24),
            "{execution:?}"
        );
        assert!(execution.duration_ms < 10_000.0, "{execution:?}");
    }

    #[tokio::test]
    async fn a_sleeping_program_is_killed_at_the_wall_clock_limit() {
        let limits = Limits {
            wall: Duration::from_millis(1500),
            ..Limits::default()
        };
        let program = "import os, time\nprint('uid', os.getuid(), flush=True)\n\
                       if os.fork() == 0:\n    os.setsid()\ntime.sleep(600)\n";
        let execution = run(&sandbox(limits).await, program).await;
        assert_eq!(execution.status, Status::TimedOut, "{execution:?}");
        assert!(execution.duration_ms < 6_000.0, "{execution:?}");
        // The child that left the process group died with the PID namespace.
        assert_eq!(
            survivors(printed_uid(&execution)).await,
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn a_memory_hog_gets_no_more_than_the_memory_limit() {
        let limits = Limits {
            memory_bytes: 512 << 20,
            ..Limits::default()
        };
        let sandbox = sandbox(limits).await;
        let hog = run(&sandbox, "x = bytearray(2 * 1024**3)\nprint('allocated')\n").await;
        assert!(!hog.success(), "{hog:?}");
        assert!(!hog.stdout.contains("allocated"), "{hog:?}");
        assert!(hog.stderr.contains("MemoryError"), "{hog:?}");
        // Under the same limit a modest allocation works: the limit, not the program, failed above.
        let modest = run(
            &sandbox,
            "x = bytearray(64 * 1024**2)\nprint('allocated')\n",
        )
        .await;
        assert!(
            modest.success() && modest.stdout.contains("allocated"),
            "{modest:?}"
        );
    }

    #[tokio::test]
    async fn a_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind() {
        let limits = Limits {
            processes: 8,
            wall: Duration::from_secs(5),
            ..Limits::default()
        };
        let sandbox = sandbox(limits).await;
        let counted = "import os, time\nprint('uid', os.getuid(), flush=True)\nn = 0\n\
                       try:\n    while True:\n        if os.fork() == 0:\n            \
                       time.sleep(600)\n            os._exit(0)\n        n += 1\n\
                       except OSError as e:\n    print('refused after', n, type(e).__name__)\n";
        let execution = run(&sandbox, counted).await;
        assert!(execution.success(), "{execution:?}");
        let refused_after: u64 = execution
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("refused after "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("fork was never refused: {execution:?}"));
        assert!(refused_after < 8, "{execution:?}");
        assert_eq!(
            survivors(printed_uid(&execution)).await,
            Vec::<String>::new()
        );

        let bomb = "import os\nprint('uid', os.getuid(), flush=True)\nwhile True:\n    \
                    try:\n        os.fork()\n    except OSError:\n        pass\n";
        let execution = run(&sandbox, bomb).await;
        assert_eq!(execution.status, Status::TimedOut, "{execution:?}");
        assert_eq!(
            survivors(printed_uid(&execution)).await,
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn sockets_cannot_reach_the_network() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let program = format!(
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    \
             print('connected')\nexcept OSError as e:\n    print('blocked:', e)\n\
             try:\n    socket.getaddrinfo('pypi.org', 443)\n    print('resolved')\n\
             except OSError as e:\n    print('no dns:', e)\n"
        );
        let execution = run(&sandbox(Limits::default()).await, &program).await;
        assert!(execution.stdout.contains("blocked:"), "{execution:?}");
        assert!(execution.stdout.contains("no dns:"), "{execution:?}");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the sandboxed program reached a socket on the host"
        );
    }

    #[tokio::test]
    async fn writes_outside_the_temporary_directory_fail_and_it_is_removed() {
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let unique = format!("tandem-escape-{}-{}", std::process::id(), sandbox_uid());
        let targets = [
            open.path().join("escaped.txt"),
            std::env::temp_dir().join(&unique),
            Path::new("/dev/shm").join(&unique),
        ];
        for target in &targets {
            assert!(!target.exists(), "{} exists already", target.display());
        }
        let mut program = String::from(
            "import os\nprint('cwd', os.getcwd())\nopen('inside.txt', 'w').write('x')\n\
             print('inside ok')\n",
        );
        for target in &targets {
            program.push_str(&format!(
                "try:\n    open({:?}, 'w').write('x')\n    print('WROTE')\n\
                 except OSError as e:\n    print('refused:', e)\n",
                target.display().to_string()
            ));
        }
        let execution = run(&sandbox(Limits::default()).await, &program).await;
        assert!(execution.success(), "{execution:?}");
        assert!(execution.stdout.contains("inside ok"), "{execution:?}");
        assert_eq!(
            execution.stdout.matches("refused:").count(),
            targets.len(),
            "{execution:?}"
        );
        for target in &targets {
            assert!(!target.exists(), "{} was written", target.display());
        }
        let cwd = execution
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("cwd "))
            .unwrap();
        assert!(cwd.contains("tandem-sandbox-"), "{cwd}");
        assert!(!Path::new(cwd).exists(), "{cwd} was not removed");
    }

    #[tokio::test]
    async fn a_file_larger_than_the_file_size_limit_cannot_be_written() {
        let limits = Limits {
            file_size_bytes: 1 << 20,
            ..Limits::default()
        };
        let sandbox = sandbox(limits).await;
        let big = run(
            &sandbox,
            "open('big', 'wb').write(b'x' * (8 << 20))\nprint('wrote')\n",
        )
        .await;
        assert!(!big.success() && !big.stdout.contains("wrote"), "{big:?}");
        assert!(big.stderr.contains("File too large"), "{big:?}");
        let small = run(
            &sandbox,
            "open('small', 'wb').write(b'x' * 1000)\nprint('wrote')\n",
        )
        .await;
        assert!(
            small.success() && small.stdout.contains("wrote"),
            "{small:?}"
        );
    }

    #[tokio::test]
    async fn a_run_dies_with_the_process_that_started_it() {
        let sandbox = sandbox(Limits {
            wall: Duration::from_secs(600),
            ..Limits::default()
        })
        .await;
        // Start a run by hand, as `run_python` does, then let go of the lifeline, as the kernel
        // does when Tandem dies (SIGKILL included): the sleeping program must not outlive it.
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().canonicalize().unwrap();
        let program = "import os, time\nprint('uid', os.getuid(), flush=True)\ntime.sleep(600)\n";
        std::fs::write(dir.join("main.py"), program).unwrap();
        let uid = sandbox_uid();
        chown(&dir, Some(uid), Some(uid)).unwrap();
        let mut spawned = spawn_filtered(sandbox.command(&dir, Some(uid), "main.py"))
            .await
            .unwrap();
        let child = &mut spawned.child;
        let mut stdout = child.stdout.take().unwrap();
        let mut started = [0u8; 4];
        stdout.read_exact(&mut started).await.unwrap();
        assert_eq!(&started, b"uid ");
        assert_eq!(pids_of_uid(uid).len(), 1, "the program is running");
        drop(child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the run outlived its lifeline")
            .unwrap();
        assert!(!status.success(), "{status:?}");
        assert_eq!(survivors(uid).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn without_namespaces_the_limits_and_the_timeout_still_hold() {
        // What a machine without namespaces gets (chosen by hand here: this one has them).
        let unisolated = |wall: Duration| Sandbox {
            limits: Limits {
                cpu_seconds: 1,
                wall,
                ..Limits::default()
            },
            isolation: Isolation::LimitsOnly,
            python: default_python().unwrap(),
            warnings: Isolation::LimitsOnly.gaps(),
        };
        // The wall clock is far off, so that the CPU limit ends the spin even on a loaded machine
        // where one CPU-second takes many seconds to use.
        let sandbox = unisolated(Duration::from_secs(30));
        assert_eq!(sandbox.warnings().len(), 3);
        let hello = run(&sandbox, "print('hello')\n").await;
        assert!(hello.success() && hello.stdout == "hello\n", "{hello:?}");
        let spin = run(&sandbox, "while True:\n    pass\n").await;
        assert!(
            matches!(spin.status, Status::Killed { signal } if signal == 9 || signal == 24),
            "{spin:?}"
        );
        let sleep = run(
            &unisolated(Duration::from_secs(2)),
            "import time\ntime.sleep(600)\n",
        )
        .await;
        assert_eq!(sleep.status, Status::TimedOut, "{sleep:?}");
    }

    #[tokio::test]
    async fn without_namespaces_code_is_refused_unless_allowed() {
        // A machine where no namespaced level works, as detection sees it.
        let error = Sandbox::detect_among(&[], Limits::default(), None, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--allow-unisolated") && error.contains("allow_unisolated"),
            "{error}"
        );
        let allowed = Sandbox::detect_among(&[], Limits::default(), None, true)
            .await
            .unwrap();
        assert_eq!(allowed.isolation(), Isolation::LimitsOnly);
        assert_eq!(allowed.describe()["isolation"], "limits_only");
    }

    #[tokio::test]
    async fn the_user_namespace_level_keeps_the_code_in_without_capabilities() {
        let sandbox =
            Sandbox::detect_among(&[Isolation::UserNamespace], Limits::default(), None, false)
                .await
                .unwrap();
        assert_eq!(sandbox.isolation(), Isolation::UserNamespace);
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = open.path().join("escaped.txt");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let program = format!(
            "import os, socket, subprocess\n\
             for args in (['mount', '-o', 'remount,rw', '/'], ['mount', '-o', 'remount,bind,rw', {dir:?}],\n\
             \x20            ['umount', '-l', '/proc'], ['mount', '-t', 'tmpfs', 'x', {dir:?}]):\n\
             \x20   r = subprocess.run(args, capture_output=True)\n\
             \x20   print('REMOUNTED' if r.returncode == 0 else 'mount refused', args)\n\
             with open('/proc/self/status' if os.path.exists('/proc/self/status') else os.devnull) as f:\n\
             \x20   print('caps', [l for l in f if l.startswith('CapEff')])\n\
             try:\n    open({target:?}, 'w').write('x')\n    print('WROTE')\n\
             except OSError as e:\n    print('write refused:', e)\n\
             try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n\
             except OSError as e:\n    print('network refused:', e)\n",
            dir = open.path().display().to_string(),
            target = target.display().to_string(),
        );
        let execution = run(&sandbox, &program).await;
        assert!(execution.success(), "{execution:?}");
        assert_eq!(
            execution.stdout.matches("mount refused").count(),
            4,
            "{execution:?}"
        );
        assert!(!execution.stdout.contains("REMOUNTED"), "{execution:?}");
        assert!(execution.stdout.contains("write refused"), "{execution:?}");
        assert!(
            execution.stdout.contains("network refused"),
            "{execution:?}"
        );
        assert!(!target.exists());
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the sandboxed program reached a socket on the host"
        );
    }

    /// The sandbox at `isolation`, whatever detection would choose (LimitsOnly by hand, as a
    /// machine without namespaces gets it).
    async fn sandbox_at(isolation: Isolation, limits: Limits) -> Sandbox {
        match isolation {
            Isolation::Full => sandbox(limits).await,
            Isolation::UserNamespace => {
                Sandbox::detect_among(&[Isolation::UserNamespace], limits, None, false)
                    .await
                    .unwrap()
            }
            Isolation::LimitsOnly => Sandbox::detect_among(&[], limits, None, true)
                .await
                .unwrap(),
        }
    }

    #[tokio::test]
    async fn no_level_lets_the_code_open_sockets_or_trace_processes() {
        // A Unix socket anyone may connect to: a read-only bind mount would not stop connect().
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = open.path().join("host.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        listener.set_nonblocking(true).unwrap();
        // PTRACE_PEEKDATA of a process we do not trace is ESRCH when ptrace is allowed at all;
        // reading zero bytes of our own memory succeeds when process_vm_readv is allowed.
        let program = format!(
            "import ctypes, os, socket\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             try:\n    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n    \
             s.connect({path:?})\n    print('CONNECTED')\n\
             except OSError as e:\n    print('connect refused:', e)\n\
             try:\n    socket.socketpair()\n    print('SOCKETPAIR')\n\
             except OSError as e:\n    print('socketpair refused:', e)\n\
             print('ptrace', libc.ptrace(2, os.getppid(), None, None), ctypes.get_errno())\n\
             print('process_vm_readv', libc.process_vm_readv(os.getpid(), None, 0, None, 0, 0), \
             ctypes.get_errno())\n",
            path = path.display().to_string(),
        );
        for isolation in [
            Isolation::Full,
            Isolation::UserNamespace,
            Isolation::LimitsOnly,
        ] {
            let sandbox = sandbox_at(isolation, Limits::default()).await;
            let execution = run(&sandbox, &program).await;
            let context = format!("{isolation:?}: {execution:?}");
            assert!(execution.success(), "{context}");
            assert!(execution.stdout.contains("connect refused:"), "{context}");
            assert!(
                execution.stdout.contains("socketpair refused:"),
                "{context}"
            );
            assert!(execution.stdout.contains("ptrace -1 1\n"), "{context}");
            assert!(
                execution.stdout.contains("process_vm_readv -1 1\n"),
                "{context}"
            );
            assert!(
                matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "{isolation:?}: the sandboxed program reached a Unix socket on the host"
            );
        }
    }

    #[tokio::test]
    async fn many_files_under_the_file_size_limit_cannot_fill_the_disk() {
        let fill = |files: usize| {
            format!(
                "written = 0\ntry:\n    for i in range({files}):\n        \
                 with open(f'big{{i}}', 'wb') as f:\n            f.write(b'x' * (8 << 20))\n        \
                 written += 1\n    print('wrote', written)\n\
                 except OSError as e:\n    print('refused after', written, e)\n"
            )
        };
        let inodes =
            "n = 0\ntry:\n    while n < 100000:\n        open(f'f{n}', 'w').close()\n        \
                      n += 1\n    print('created', n)\nexcept OSError as e:\n    \
                      print('refused after', n, e)\n";
        let limits = Limits {
            work_dir_bytes: 64 << 20,
            work_dir_inodes: 4096,
            ..Limits::default()
        };
        for isolation in [Isolation::Full, Isolation::UserNamespace] {
            let sandbox = sandbox_at(isolation, limits).await;
            let two = run(&sandbox, &fill(2)).await;
            assert!(two.stdout.contains("wrote 2"), "{isolation:?}: {two:?}");
            let twenty = run(&sandbox, &fill(20)).await;
            assert!(
                twenty.stdout.contains("refused after")
                    && twenty.stdout.contains("No space left on device"),
                "{isolation:?}: {twenty:?}"
            );
            let many = run(&sandbox, inodes).await;
            let created: u64 = many
                .stdout
                .strip_prefix("refused after ")
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("{isolation:?}: no inode limit: {many:?}"));
            assert!(created < 4096, "{isolation:?}: {many:?}");
            assert!(
                many.stdout.contains("No space left on device"),
                "{isolation:?}: {many:?}"
            );
        }
    }

    #[test]
    fn wrapped_exit_codes_above_128_are_signals() {
        let raw = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(decode_status(raw(137), true), Status::Killed { signal: 9 });
        assert_eq!(decode_status(raw(137), false), Status::Exited { code: 137 });
        assert_eq!(decode_status(raw(1), true), Status::Exited { code: 1 });
        assert_eq!(
            decode_status(ExitStatus::from_raw(9), false),
            Status::Killed { signal: 9 }
        );
    }
}
