use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use fpn_runtime::notify::{Notifier, NotifyState};

fn recv_text(listener: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = listener.recv(&mut buf).expect("a datagram within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn notifications_reach_a_path_socket() {
    let dir = std::env::temp_dir().join(format!("fpn-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixDatagram::bind(&path).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(2))).unwrap();

    let notifier = Notifier::connect(path.to_str().unwrap()).unwrap();
    assert!(notifier.is_enabled());
    notifier.ready().unwrap();
    assert_eq!(recv_text(&listener), "READY=1");
    notifier.watchdog().unwrap();
    assert_eq!(recv_text(&listener), "WATCHDOG=1");
    notifier.notify(&[NotifyState::Stopping, NotifyState::Status("draining\nrings")]).unwrap();
    assert_eq!(recv_text(&listener), "STOPPING=1\nSTATUS=draining rings");
    notifier.status("2 shards up").unwrap();
    assert_eq!(recv_text(&listener), "STATUS=2 shards up");

    drop(listener);
    std::fs::remove_dir_all(&dir).unwrap();
    // Nobody listening any more: the error is reported, not swallowed.
    assert!(notifier.ready().is_err());
}

#[test]
fn notifications_reach_an_abstract_socket() {
    let name = format!("fpn-notify-test-{}", std::process::id());
    let listener =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let notifier = Notifier::connect(&format!("@{name}")).unwrap();
    notifier.ready().unwrap();
    assert_eq!(recv_text(&listener), "READY=1");
}

/// Runs the ignored test `name` of this binary in a child process with `env` set (the
/// environment is process-wide, so it is set in a child rather than changed here).
fn run_child(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
#[ignore = "child process of notifier_follows_the_environment"]
fn child_notifies_from_env() {
    let notifier = Notifier::from_env().unwrap();
    let timeout = fpn_runtime::notify::watchdog_timeout_from_env().unwrap();
    println!("CHILD enabled={} watchdog={:?}", notifier.is_enabled(), timeout);
    notifier.notify(&[NotifyState::Ready, NotifyState::Status("child")]).unwrap();
}

#[test]
fn notifier_follows_the_environment() {
    let name = format!("fpn-notify-env-{}", std::process::id());
    let listener =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let output = run_child(
        "notify::child_notifies_from_env",
        &[("NOTIFY_SOCKET", &format!("@{name}")), ("WATCHDOG_USEC", "2000000")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // WATCHDOG_PID unset: the timeout applies to whoever reads it.
    assert!(stdout.contains("CHILD enabled=true watchdog=Some(2s)"), "{stdout}");
    assert_eq!(recv_text(&listener), "READY=1\nSTATUS=child");

    // Without NOTIFY_SOCKET the notifier is a no-op; WATCHDOG_PID of another process hides
    // an inherited WATCHDOG_USEC.
    let output =
        run_child("notify::child_notifies_from_env", &[("WATCHDOG_USEC", "2000000"), ("WATCHDOG_PID", "1")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("CHILD enabled=false watchdog=None"), "{stdout}");
}
