//! Unit tests of the connector: which source a connect takes, and real connects on 127.0.0.1.

use super::*;

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn sources_of_the_destinations_family_are_taken_in_turn() {
    let sources = ips(&["127.0.0.2", "::1", "127.0.0.3"]);
    let v4: SocketAddr = "10.0.0.1:443".parse().unwrap();
    let v6: SocketAddr = "[::1]:443".parse().unwrap();
    let turns: Vec<_> = (0..4).map(|t| pick_source(&sources, t, &v4)).collect();
    let want = ips(&["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
    assert_eq!(turns, want.into_iter().map(Some).collect::<Vec<_>>());
    assert_eq!(pick_source(&sources, 7, &v6), Some("::1".parse().unwrap()));
    assert_eq!(
        pick_source(&ips(&["::1"]), 0, &v4),
        None,
        "none of the family: the system picks"
    );
    assert_eq!(pick_source(&[], 3, &v4), None);
}

#[actix_rt::test]
async fn a_connect_from_a_source_address_arrives_from_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let source: IpAddr = "127.0.0.2".parse().unwrap();
    let stream = connect(addr, Some(source)).await.unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), source);
    assert_eq!(stream.local_addr().unwrap().ip(), source);
    let plain = connect(addr, None).await.unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), plain.local_addr().unwrap().ip());
}

#[actix_rt::test]
async fn a_refused_connect_is_an_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = connect(addr, None).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn the_port_range_is_read_as_the_kernel_writes_it() {
    assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
    assert_eq!(parse_port_range("1024 1024"), Some((1024, 1024)));
    for bad in [
        "",
        "32768",
        "60999\t32768",
        "0\t100",
        "1 2 3",
        "a\tb",
        "1\t70000",
    ] {
        assert_eq!(parse_port_range(bad), None, "{bad:?}");
    }
}

/// Linux gives a `connect()` without a range of its own an even port while one is free
/// (the odd ones are kept for `bind()`), and past half the range searches all the even
/// ones on every call. With the system's range as the socket's own, any free port is
/// taken: of 24 connects some get odd ports (all even has a chance of 2^-24).
#[actix_rt::test]
async fn connects_take_any_free_port_of_the_system_s_range() {
    let range = system_port_range().expect("this kernel has an ip_local_port_range");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut ports, mut accepted) = (Vec::new(), Vec::new());
    for _ in 0..24 {
        let stream = connect(addr, None).await.unwrap();
        ports.push(stream.local_addr().unwrap().port());
        // Both ends stay open, so every connect needs a port of its own.
        accepted.push((stream, listener.accept().unwrap()));
    }
    assert!(
        ports.iter().any(|p| p % 2 == 1),
        "only even ports: {ports:?}"
    );
    assert!(
        ports.iter().all(|p| (range.0..=range.1).contains(p)),
        "outside {range:?}: {ports:?}"
    );
}
