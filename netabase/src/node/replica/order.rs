//! The conflict rule's order between two envelopes of one record, which
//! every peer applies the same way.

use crate::codec::Envelope;

/// Whether `envelope` beats `held` under the conflict rule: the greater
/// version, and between two different envelopes with an equal version (one
/// writer signing two records with one timestamp) the greater digest, so
/// every peer keeps the same one.
pub(crate) fn wins(envelope: &Envelope, held: &Envelope) -> bool {
    precedence(envelope, held) == std::cmp::Ordering::Greater
}

/// The conflict rule's order: by version, then (one writer, one timestamp,
/// two records) by envelope digest. Every peer orders the same way.
pub(crate) fn precedence(a: &Envelope, b: &Envelope) -> std::cmp::Ordering {
    a.version().cmp(&b.version()).then_with(|| {
        crate::sync::reconcile::digest(a.as_bytes())
            .cmp(&crate::sync::reconcile::digest(b.as_bytes()))
    })
}
