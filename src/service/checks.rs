//! The check arrays of an import answer, listed once. Each is both a key of
//! Didit's JSON answer and the `repeated google.protobuf.Struct` field of
//! `ImportSharedSessionResponse` with the same name; a unit test holds this
//! table to the proto's descriptor. The answer's mapping and the tests read
//! it; the sandbox keeps its own list (it cannot depend on the gateway) and
//! a test in `tests/share_import.rs` holds that one to this table.

use crate::proto::ImportSharedSessionResponse;

/// One check array.
#[derive(Clone, Copy)]
pub struct Check {
    /// Didit's JSON key, which is also the proto field's name.
    pub key: &'static str,
    /// The proto field's number.
    pub number: u32,
    /// The response field that carries it.
    pub field: fn(&ImportSharedSessionResponse) -> &Vec<prost_types::Struct>,
    /// The same field, to fill it.
    pub field_mut: fn(&mut ImportSharedSessionResponse) -> &mut Vec<prost_types::Struct>,
}

/// The entry for the response field `$name = $number` (the JSON key is its
/// name).
macro_rules! check {
    ($name:ident = $number:literal) => {
        Check {
            key: stringify!($name),
            number: $number,
            field: |r| &r.$name,
            field_mut: |r| &mut r.$name,
        }
    };
}

/// A KYC (`session_kind` `user`) answer's check arrays, in proto order.
pub const KYC_CHECKS: [Check; 9] = [
    check!(id_verifications = 10),
    check!(liveness_checks = 11),
    check!(face_matches = 12),
    check!(aml_screenings = 13),
    check!(database_validations = 14),
    check!(proof_of_address = 15),
    check!(location_checks = 16),
    check!(phone_verifications = 17),
    check!(email_verifications = 18),
];

/// A KYB (`business`) answer's check arrays, in proto order;
/// `aml_screenings` is in both kinds.
pub const KYB_CHECKS: [Check; 5] = [
    check!(aml_screenings = 13),
    check!(registry_checks = 20),
    check!(key_people_checks = 21),
    check!(document_verifications = 22),
    check!(questionnaires = 23),
];

/// The check array Didit's JSON `key` names, if it names one.
pub fn find(key: &str) -> Option<Check> {
    KYC_CHECKS
        .into_iter()
        .chain(KYB_CHECKS)
        .find(|check| check.key == key)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};

    use super::*;

    /// The repeated `Struct` fields of `ImportSharedSessionResponse`, by
    /// name, with their field numbers, from the descriptor set the build
    /// writes for reflection.
    fn proto_check_fields() -> BTreeMap<String, i32> {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the build's descriptor set");
        let message = set
            .file
            .iter()
            .filter(|file| file.package() == "didit.share.v1")
            .flat_map(|file| &file.message_type)
            .find(|message| message.name() == "ImportSharedSessionResponse")
            .expect("ImportSharedSessionResponse in the descriptor set");
        message
            .field
            .iter()
            .filter(|f| {
                f.label() == Label::Repeated
                    && f.r#type() == Type::Message
                    && f.type_name() == ".google.protobuf.Struct"
            })
            .map(|f| (f.name().to_owned(), f.number()))
            .collect()
    }

    #[test]
    fn the_table_is_the_protos_list_of_check_arrays() {
        let proto = proto_check_fields();
        let table: BTreeSet<&str> = KYC_CHECKS
            .iter()
            .chain(&KYB_CHECKS)
            .map(|c| c.key)
            .collect();
        let proto_names: BTreeSet<&str> = proto.keys().map(String::as_str).collect();
        assert_eq!(table, proto_names);
        // Each kind's list is in proto field order: KYC in the 10s, the
        // KYB-only arrays in the 20s (aml_screenings, 13, is shared).
        for (list, kind) in [(&KYC_CHECKS[..], "KYC"), (&KYB_CHECKS[..], "KYB")] {
            let numbers: Vec<i32> = list.iter().map(|c| proto[c.key]).collect();
            assert!(numbers.is_sorted(), "{kind}: {numbers:?}");
        }
        for check in KYC_CHECKS.iter().chain(&KYB_CHECKS) {
            let number = proto[check.key];
            let kyc = KYC_CHECKS.iter().any(|c| c.key == check.key);
            let block = if kyc { 10..20 } else { 20..30 };
            assert!(block.contains(&number), "{} = {number}", check.key);
            assert_eq!(i32::try_from(check.number), Ok(number), "{}", check.key);
        }
    }
}
