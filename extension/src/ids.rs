//! Delivery ids that fan-out derives rather than draws.

use sha2::{Digest, Sha256};

/// The id of the delivery of event `event_id` to endpoint `endpoint_id`, as
/// fan-out makes it: the same inputs give the same id, so when a failover
/// with asynchronous replication loses a fan-out (the event survived, its
/// deliveries did not) the fan-out made again on the new primary sends the
/// same webhook-id and receivers can still deduplicate. A version 7 UUID
/// with the event's timestamp, so deliveries sort as their events; the
/// other 74 bits from SHA-256 of both ids.
pub fn delivery_id(event_id: [u8; 16], endpoint_id: i64) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"pg_webhooks delivery id\0")
        .chain_update(event_id)
        .chain_update(endpoint_id.to_be_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[..6].copy_from_slice(&event_id[..6]);
    id[6] = 0x70 | (id[6] & 0x0f);
    id[8] = 0x80 | (id[8] & 0x3f);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_event_and_endpoint_with_the_events_time() {
        let event = *uuid::Uuid::now_v7().as_bytes();
        let a = uuid::Uuid::from_bytes(delivery_id(event, 1));
        assert_eq!(a.as_bytes(), &delivery_id(event, 1));
        assert_ne!(delivery_id(event, 1), delivery_id(event, 2));
        let mut other = event;
        other[15] ^= 1;
        assert_ne!(delivery_id(event, 1), delivery_id(other, 1));
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.get_timestamp(), uuid::Uuid::from_bytes(event).get_timestamp());
    }
}
