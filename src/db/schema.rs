// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (id) {
        id -> Integer,
        username -> Text,
        username_key -> Text,
        password_hash -> Text,
        created_at_ms -> BigInt,
        role -> Text,
    }
}

diesel::table! {
    allow_list (username_key) {
        username_key -> Text,
        by_name -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Integer,
        at_ms -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        detail -> Text,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> Integer,
        account_id -> Integer,
        sender -> Text,
        body -> Text,
        sent_at_ms -> BigInt,
    }
}

diesel::table! {
    ip_bans (network) {
        network -> Text,
        until_ms -> Nullable<BigInt>,
        reason -> Text,
        by_name -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    positions (account_id) {
        account_id -> Integer,
        x -> Float,
        y -> Float,
        saved_at_ms -> BigInt,
    }
}

diesel::table! {
    sanctions (account_id, kind) {
        account_id -> Integer,
        kind -> Text,
        until_ms -> Nullable<BigInt>,
        reason -> Text,
        by_name -> Text,
        created_at_ms -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Integer,
        account_id -> Integer,
        token_hash -> Text,
        created_at_ms -> BigInt,
        expires_at_ms -> BigInt,
        last_used_at_ms -> BigInt,
    }
}

diesel::joinable!(chat_messages -> accounts (account_id));
diesel::joinable!(positions -> accounts (account_id));
diesel::joinable!(sanctions -> accounts (account_id));
diesel::joinable!(sessions -> accounts (account_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    allow_list,
    audit_log,
    chat_messages,
    ip_bans,
    positions,
    sanctions,
    sessions,
);
