//! systemd service notification (`sd_notify`) and watchdog interval.
//!
//! The protocol is one datagram of newline-separated `KEY=VALUE` assignments sent to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! With the variable unset the [`Notifier`] is disabled and every call is a no-op, so the
//! daemon calls it unconditionally. `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, if set, must be
//! our pid) gives the watchdog timeout; send `WATCHDOG=1` at about half of it, and only when
//! every shard's heartbeat advanced ([`crate::heartbeat`]).

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Longest status text sent; longer text is cut at a character boundary.
pub const STATUS_BYTES_MAX: usize = 512;

/// Why a notification could not be sent or the environment was not understood.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract `@name`")]
    UnsupportedAddress(String),
    #[error("NOTIFY_SOCKET {path:?}: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("sending to NOTIFY_SOCKET failed: {0}")]
    Send(std::io::Error),
    #[error("WATCHDOG_USEC {0:?} is not a positive integer")]
    BadWatchdogUsec(String),
}

/// One assignment of the notification protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyState<'a> {
    /// `READY=1`: start-up finished (after every shard reported READY).
    Ready,
    /// `STOPPING=1`: shutdown began.
    Stopping,
    /// `WATCHDOG=1`: still alive.
    Watchdog,
    /// `STATUS=...`: one line of free text (newlines become spaces).
    Status(&'a str),
}

/// Sends notifications to systemd; disabled (every call a no-op) without `$NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; disabled when unset or empty.
    pub fn from_env() -> Result<Self, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Self::connect(&path),
            _ => Ok(Self::disabled()),
        }
    }

    /// A notifier that does nothing.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// A notifier sending to `address` (`/path` or `@abstract`).
    pub fn connect(address: &str) -> Result<Self, NotifyError> {
        let socket_error = |source| NotifyError::Socket { path: address.to_string(), source };
        let addr = if let Some(name) = address.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(socket_error)?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(socket_error)?
        } else {
            return Err(NotifyError::UnsupportedAddress(address.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        Ok(Self { target: Some((socket, addr)) })
    }

    /// True when notifications are actually sent.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends the assignments in one datagram.
    pub fn notify(&self, states: &[NotifyState<'_>]) -> Result<(), NotifyError> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        let message = format_message(states);
        socket.send_to_addr(message.as_bytes(), addr).map_err(NotifyError::Send)?;
        Ok(())
    }

    pub fn ready(&self) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Ready])
    }

    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Stopping])
    }

    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Watchdog])
    }

    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Status(text)])
    }
}

/// The datagram for `states`: assignments joined by `\n`.
pub fn format_message(states: &[NotifyState<'_>]) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(states.len());
    for state in states {
        lines.push(match state {
            NotifyState::Ready => "READY=1".to_string(),
            NotifyState::Stopping => "STOPPING=1".to_string(),
            NotifyState::Watchdog => "WATCHDOG=1".to_string(),
            NotifyState::Status(text) => {
                let mut end = text.len().min(STATUS_BYTES_MAX);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                format!("STATUS={}", text[..end].replace(['\n', '\r'], " "))
            }
        });
    }
    lines.join("\n")
}

/// The watchdog timeout from `$WATCHDOG_USEC`/`$WATCHDOG_PID`; `None` when not enabled for us.
pub fn watchdog_timeout_from_env() -> Result<Option<Duration>, NotifyError> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Parses the watchdog variables: `None` if `usec` is unset, or `pid` is set and names
/// another process (the variables were inherited); an error if `usec` is not a positive
/// integer.
pub fn parse_watchdog(
    usec: Option<&str>,
    pid: Option<&str>,
    self_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(self_pid)
    {
        return Ok(None);
    }
    match usec.trim().parse::<u64>() {
        Ok(us) if us > 0 => Ok(Some(Duration::from_micros(us))),
        _ => Err(NotifyError::BadWatchdogUsec(usec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_formatted_per_protocol() {
        assert_eq!(format_message(&[NotifyState::Ready]), "READY=1");
        assert_eq!(
            format_message(&[NotifyState::Ready, NotifyState::Status("up\n2 shards")]),
            "READY=1\nSTATUS=up 2 shards"
        );
        let long = "é".repeat(STATUS_BYTES_MAX);
        let message = format_message(&[NotifyState::Status(&long)]);
        assert!(message.len() <= "STATUS=".len() + STATUS_BYTES_MAX);
    }

    #[test]
    fn watchdog_variables_are_parsed() {
        assert_eq!(parse_watchdog(None, None, 7).unwrap(), None);
        assert_eq!(parse_watchdog(Some("3000000"), None, 7).unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(parse_watchdog(Some("3000000"), Some("7"), 7).unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(parse_watchdog(Some("3000000"), Some("8"), 7).unwrap(), None);
        assert!(matches!(parse_watchdog(Some("0"), None, 7), Err(NotifyError::BadWatchdogUsec(_))));
        assert!(matches!(parse_watchdog(Some("3s"), None, 7), Err(NotifyError::BadWatchdogUsec(_))));
    }

    #[test]
    fn relative_addresses_are_refused_and_disabled_is_a_no_op() {
        assert!(matches!(Notifier::connect("run/notify"), Err(NotifyError::UnsupportedAddress(_))));
        let disabled = Notifier::disabled();
        assert!(!disabled.is_enabled());
        disabled.ready().unwrap();
        disabled.watchdog().unwrap();
    }
}
