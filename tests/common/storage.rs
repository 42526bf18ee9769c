//! Helpers for tests that damage or fill the data file.

use std::path::Path;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The daemon's overall health status, as a load balancer would ask.
pub async fn health(addr: &str) -> ServingStatus {
    let channel = Channel::from_shared(addr.to_string())
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health check")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a known status")
}

/// Inverts the bytes of every occurrence of `marker` in the file, plus a
/// few bytes spread over its middle: damage that lands in pages redb uses
/// (the marker is inside stored records), so it must be detected. Returns
/// how many occurrences were hit.
pub fn damage_file(path: &Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).expect("read the data file");
    let mut hits = 0;
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], marker) {
        let start = at + found;
        for b in &mut bytes[start..start + marker.len()] {
            *b = !*b;
        }
        hits += 1;
        at = start + marker.len();
    }
    let len = bytes.len();
    for eighth in 3..=5 {
        let i = len * eighth / 8;
        bytes[i] = !bytes[i];
    }
    std::fs::write(path, &bytes).expect("write the data file");
    hits
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
