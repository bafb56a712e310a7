//! The streams area: streams with the seed's status machine, metadata, filters, viewers,
//! and where a streamer pushes ([`routes`] for REST, [`repo`] for its tables).

pub(crate) mod repo;
pub(crate) mod routes;
