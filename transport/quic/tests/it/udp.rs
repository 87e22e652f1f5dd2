//! `fpn_quic::udp::UdpSocket` alone.

use std::time::{Duration, Instant};

use fpn_quic::udp::{RxSource, TimestampMode, UdpSocket};

/// Reads from `sockets` until `n` datagrams came (or 10 s passed: the kernel is quick, but a
/// loaded machine is not a reason to fail).
fn read_n(sockets: &mut [&mut UdpSocket], n: usize) -> Vec<(usize, u8, RxSource, u64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < deadline {
        for s in sockets.iter_mut() {
            s.recv_batch(
                || 7,
                |r| got.push((r.data.len(), r.data.first().copied().unwrap_or(0), r.source, r.rx_ns)),
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

#[test]
fn reuseport_pair_gso_gro_and_software_timestamps_on_loopback() {
    let mut a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true, TimestampMode::Software).unwrap();
    let mut b = UdpSocket::bind(a.local_addr(), true, TimestampMode::Software).unwrap();
    assert_eq!(a.local_addr(), b.local_addr());
    let mut tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Off).unwrap();
    // The kernel turns receive stamping on for the whole stack lazily (a deferred static key)
    // when the first socket asks: datagrams right after may come unstamped. Probe until on.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.send(a.local_addr(), &[0], None).unwrap();
        let probe = read_n(&mut [&mut a, &mut b], 1);
        if probe.first().is_some_and(|p| p.2 == RxSource::Software) || Instant::now() > deadline {
            break;
        }
    }
    // 8 segments of 1000 bytes in one GSO send, then a short datagram.
    let payload: Vec<u8> = (0..8000u32).map(|i| (i / 1000) as u8 + 1).collect();
    tx.send(a.local_addr(), &payload, Some(1000)).unwrap();
    tx.send(a.local_addr(), &[0xAB; 10], None).unwrap();
    let got = read_n(&mut [&mut a, &mut b], 9);
    assert_eq!(got.len(), 9, "{got:?}");
    let lens: Vec<usize> = got.iter().map(|g| g.0).collect();
    assert_eq!(lens.iter().filter(|&&l| l == 1000).count(), 8);
    assert!(lens.contains(&10));
    // Software stamps are wall-clock ns, far above the read-time stand-in.
    assert!(got.iter().any(|g| g.2 == RxSource::Software && g.3 > 1_000_000_000_000_000_000), "{got:?}");
}

#[test]
fn an_empty_datagram_is_read_as_one_and_timestamps_off_use_the_read_time() {
    let mut rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Off).unwrap();
    let mut tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Off).unwrap();
    tx.send(rx.local_addr(), &[], None).unwrap();
    tx.send(rx.local_addr(), &[1, 2, 3], None).unwrap();
    let got = read_n(&mut [&mut rx], 2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, 0, "the empty datagram is handed on (the server counts it as garbage)");
    assert_eq!(got[1].0, 3);
    assert!(got.iter().all(|g| g.2 == RxSource::ReadTime && g.3 == 7), "{got:?}");
    assert_eq!(rx.counters.rx_read_time_total, 2);
}

#[test]
fn hardware_stamps_asked_of_a_device_without_them_fall_back_to_software_stamps() {
    // Loopback (and this VM's virtio NIC) offer no hardware receive stamping: the socket says
    // so and why, and every datagram still gets the kernel's software stamp.
    let mut rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Hardware).unwrap();
    let stamping = rx.rx_stamping().clone();
    assert_eq!(stamping.source, RxSource::Software, "{stamping:?}");
    assert!(stamping.detail.starts_with("software on lo: "), "{}", stamping.detail);
    let mut tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Off).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    // See above: the first stamps may be missing until the kernel's static key is on.
    while got.len() < 20 && Instant::now() < deadline {
        tx.send(rx.local_addr(), &[1, 2, 3], None).unwrap();
        got.extend(read_n(&mut [&mut rx], 1).into_iter().filter(|g| g.2 != RxSource::ReadTime));
    }
    assert_eq!(got.len(), 20, "software stamps with hardware asked for");
    assert!(got.iter().all(|g| g.2 == RxSource::Software && g.3 > 1_000_000_000_000_000_000), "{got:?}");
    assert_eq!(rx.counters.rx_hardware_total, 0);
    // The other modes say what they are.
    let soft = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Software).unwrap();
    assert_eq!(soft.rx_stamping().source, RxSource::Software);
    let off = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, TimestampMode::Off).unwrap();
    assert_eq!(off.rx_stamping().source, RxSource::ReadTime);
}
