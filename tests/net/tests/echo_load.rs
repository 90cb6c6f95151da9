//! The load client against the echo service over loopback, and against services
//! that misbehave on purpose: every kind of damage must be reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use guest_net::echo::{EchoService, Served};
use guest_net::load::{Client, RoundTripVerdict, Workload};
use guest_net::protocol::{banner, checksum_line};

const TIMEOUT: Duration = Duration::from_secs(5);

fn start_service(label: &str) -> (SocketAddr, JoinHandle<Served>) {
    let service = EchoService::bind("127.0.0.1:0".parse().unwrap(), label, TIMEOUT).unwrap();
    let addr = service.local_addr().unwrap();
    (addr, thread::spawn(move || service.serve().unwrap()))
}

fn client(addr: SocketAddr, label: &str) -> Client {
    Client {
        addr,
        label: label.into(),
        startup: Duration::from_millis(300),
        io_timeout: TIMEOUT,
    }
}

#[test]
fn a_workload_runs_clean_and_quit_ends_the_service() {
    let (addr, service) = start_service("loopback");
    let workload = Workload {
        round_trips: 200,
        message_len: 64,
        transfer_bytes: 3 << 20,
    };
    let report = client(addr, "loopback").run(&workload);
    assert_eq!(report.label, "loopback");
    let round_trips = report.round_trips.unwrap();
    assert_eq!(round_trips.count, 200);
    assert!(round_trips.min <= round_trips.mean && round_trips.mean <= round_trips.max);
    assert_eq!(report.upload.unwrap().bytes, 3 << 20);
    assert_eq!(report.download.unwrap().bytes, 3 << 20);
    assert_eq!(report.quit, Ok(()));
    let served = service.join().unwrap();
    assert_eq!(
        served,
        Served {
            connections: 4,
            failed: 0,
            echoed_bytes: 200 * 64,
            sunk_bytes: 3 << 20,
            sourced_bytes: 3 << 20,
        }
    );
}

#[test]
fn the_service_refuses_bad_commands_and_survives_broken_clients() {
    let (addr, service) = start_service("loopback");
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "tcp-echo loopback\n");
    stream.write_all(b"sink 0\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("error length 0"), "{line}");

    let mut broken = TcpStream::connect(addr).unwrap();
    broken.write_all(b"sink 1000\nonly a few bytes").unwrap();
    drop(broken);

    assert_eq!(client(addr, "loopback").quit(), Ok(()));
    let served = service.join().unwrap();
    assert_eq!((served.connections, served.failed), (3, 1));
}

#[test]
fn a_service_with_another_label_or_none_at_all_is_an_error() {
    let (addr, service) = start_service("e1000-mmio");
    let err = client(addr, "e1000-direct").round_trips(1, 8).unwrap_err();
    assert!(
        err.contains("greeted with \"tcp-echo e1000-mmio\""),
        "{err}"
    );
    client(addr, "e1000-mmio").quit().unwrap();
    service.join().unwrap();

    // Nothing listens on a port that was just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = client(port, "x").upload(10).unwrap_err();
    assert!(err.contains("reaching the service within 300ms"), "{err}");
}

/// A service that greets properly and then runs `misbehave` on the connection.
fn fake_service(
    label: &'static str,
    misbehave: impl FnOnce(BufReader<TcpStream>, TcpStream) + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        writeln!(stream, "{}", banner(label)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut command = String::new();
        reader.read_line(&mut command).unwrap();
        misbehave(reader, stream);
    });
    addr
}

#[test]
fn a_corrupted_echo_is_an_error() {
    let addr = fake_service("bad", |mut reader, mut stream| {
        let mut message = [0; 16];
        reader.read_exact(&mut message).unwrap();
        message[5] ^= 1;
        stream.write_all(&message).unwrap();
    });
    let err = client(addr, "bad").round_trips(3, 16).unwrap_err();
    assert!(
        err.contains("round trip 0: the echo differs from the message at byte 5"),
        "{err}"
    );
}

#[test]
fn a_wrong_checksum_either_way_is_an_error() {
    let addr = fake_service("bad", |mut reader, mut stream| {
        let mut data = vec![0; 1000];
        reader.read_exact(&mut data).unwrap();
        writeln!(stream, "{}", checksum_line(crc32fast::hash(&data) ^ 1)).unwrap();
    });
    let err = client(addr, "bad").upload(1000).unwrap_err();
    assert!(err.contains("checksum of the bytes sent is"), "{err}");

    // The right checksum of the wrong bytes: the pattern check catches it.
    let addr = fake_service("bad", |_, mut stream| {
        let data = vec![7; 1000];
        stream.write_all(&data).unwrap();
        writeln!(stream, "{}", checksum_line(crc32fast::hash(&data))).unwrap();
    });
    let err = client(addr, "bad").download(1000).unwrap_err();
    assert!(err.contains("checksum of the bytes received is"), "{err}");
}

#[test]
fn a_short_transfer_or_extra_bytes_are_errors() {
    let addr = fake_service("bad", |_, mut stream| {
        stream.write_all(&[0; 10]).unwrap();
    });
    let err = client(addr, "bad").download(1000).unwrap_err();
    assert!(err.contains("closed after 10 of 1000 bytes"), "{err}");

    let addr = fake_service("bad", |mut reader, mut stream| {
        let mut message = [0; 8];
        reader.read_exact(&mut message).unwrap();
        stream.write_all(&message).unwrap();
        stream.write_all(b"extra").unwrap();
    });
    let err = client(addr, "bad").round_trips(1, 8).unwrap_err();
    assert!(err.contains("sent more than asked"), "{err}");
}

#[test]
fn a_continuous_load_counts_each_round_trip_and_the_service_counts_as_it_echoes() {
    let service = EchoService::bind("127.0.0.1:0".parse().unwrap(), "live", TIMEOUT).unwrap();
    let addr = service.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    let mut verdicts = Vec::new();
    thread::scope(|scope| {
        let serving = scope.spawn(|| service.serve().unwrap());
        client(addr, "live").round_trips_until(64, &stop, |verdict| {
            verdicts.push(verdict);
            if verdicts.len() == 50 {
                stop.store(true, Ordering::Relaxed);
            }
        });
        // The service counts an echo once sent, which the client may read first.
        assert!(service.echoed_so_far() >= 49 * 64);
        let quit = client(addr, "live").quit();
        let served = serving.join().unwrap();
        assert_eq!(quit, Ok(()));
        assert_eq!(served.echoed_bytes, 50 * 64);
    });
    assert_eq!(service.echoed_so_far(), 50 * 64);
    assert!(verdicts.iter().all(|v| *v == RoundTripVerdict::Exact));
}

#[test]
fn a_continuous_load_tells_a_wrong_echo_and_goes_on_over_a_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The first connection corrupts its second echo; the second echoes faithfully
    // until the client goes.
    thread::spawn(move || {
        for corrupt_at in [Some(1), None] {
            let (mut stream, _) = listener.accept().unwrap();
            writeln!(stream, "{}", banner("flaky")).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut command = String::new();
            reader.read_line(&mut command).unwrap();
            let mut message = [0; 16];
            for round in 0.. {
                if reader.read_exact(&mut message).is_err() {
                    break;
                }
                if Some(round) == corrupt_at {
                    message[3] ^= 0x80;
                }
                stream.write_all(&message).unwrap();
                if Some(round) == corrupt_at {
                    break;
                }
            }
        }
    });
    let stop = AtomicBool::new(false);
    let mut verdicts = Vec::new();
    client(addr, "flaky").round_trips_until(16, &stop, |verdict| {
        verdicts.push(verdict);
        if verdicts.len() == 5 {
            stop.store(true, Ordering::Relaxed);
        }
    });
    use RoundTripVerdict::{Exact, Wrong};
    assert_eq!(verdicts, [Exact, Wrong, Exact, Exact, Exact]);
}
