//! The accounts area: users and roles, sessions, API tokens, stream keys, names reserved by
//! configuration ([`routes`] for REST, [`repo`] for its tables).

pub(crate) mod repo;
pub(crate) mod routes;
