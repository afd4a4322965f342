//! Chorus on Redis: the store of record and the bus between nodes, for a
//! standalone Redis or a Redis Cluster.
//!
//! The backend itself (presence, bus and document log on Redis, behind the
//! traits of `chorus-store` and held to its conformance suite) is being
//! built; see the Redis issue. What is here now is [`testing`]: real
//! `redis-server` processes for tests, standalone and in Clusters.

pub mod testing;
