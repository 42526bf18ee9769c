//! Who holds a hostname: a route, a project's reservation of its fixed
//! names, or a custom domain claim. One function, used by the writer's
//! checks and by reads, so both judge a name the same way.

use redb::ReadableTable;

use crate::error::Error;
use crate::io::store::codec::decode;
use crate::io::store::state::storage;
use crate::model::routes::Holder;
use crate::model::{ProjectId, Route, RouteKind};

pub(crate) fn holder_of(
    routes: &impl ReadableTable<&'static str, &'static [u8]>,
    reserved: &impl ReadableTable<&'static str, (&'static str, u8)>,
    domains: &impl ReadableTable<&'static str, &'static str>,
    fqdn: &str,
) -> Result<Option<Holder>, Error> {
    if let Some(bytes) = routes.get(fqdn).map_err(storage)? {
        return Ok(Some(Holder::Route(decode::<Route>(bytes.value())?)));
    }
    if let Some(guard) = reserved.get(fqdn).map_err(storage)? {
        let (project, code) = guard.value();
        let kind = RouteKind::from_code(code)
            .ok_or_else(|| Error::internal(format!("corrupt reservation of {fqdn}")))?;
        return Ok(Some(Holder::Claim {
            project_id: ProjectId::parse(project, "stored project id")?,
            kind,
        }));
    }
    if let Some(guard) = domains.get(fqdn).map_err(storage)? {
        return Ok(Some(Holder::Claim {
            project_id: ProjectId::parse(guard.value(), "stored project id")?,
            kind: RouteKind::Live,
        }));
    }
    Ok(None)
}
