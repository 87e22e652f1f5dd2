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
