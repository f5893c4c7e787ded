-- The vault's own schema. Applied as the vault_app role, which owns it; switch_app has no access.
-- The full PAN exists here only as AES-GCM ciphertext; the CVC is never stored.

CREATE SCHEMA vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

-- Data-encryption keys (DEKs), each wrapped (AES-GCM) by a key-encryption key that never leaves the HSM.
-- Exactly one version is active (used for new ciphertexts); retired versions still decrypt.
CREATE TABLE vault.data_keys (
    version     integer PRIMARY KEY CHECK (version > 0),
    wrapped_key bytea NOT NULL,
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    kek_label   text NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX data_keys_one_active ON vault.data_keys (state) WHERE state = 'active';
-- Tokens name their key by version without a foreign key: the check locked this one active row FOR KEY SHARE
-- for every card stored, a lock all concurrent tokenizations share (schema.sql has the measurement). What the
-- foreign key guarded is kept here: a data key is never deleted or renumbered, since a token naming a missing
-- version could never be read again.
CREATE FUNCTION vault.refuse_data_key_loss() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vault.data_keys rows are never deleted or renumbered: tokens name them by version';
END
$$;
CREATE TRIGGER data_keys_never_deleted BEFORE DELETE OR TRUNCATE ON vault.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vault.refuse_data_key_loss();
CREATE TRIGGER data_keys_never_renumbered BEFORE UPDATE OF version ON vault.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vault.refuse_data_key_loss();

-- The HMAC key for card fingerprints, wrapped by the KEK like a DEK. One row.
CREATE TABLE vault.fingerprint_key (
    id          smallint PRIMARY KEY CHECK (id = 1),
    wrapped_key bytea NOT NULL,
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    kek_label   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vault.tokens (
    id          text PRIMARY KEY CHECK (id LIKE 'tok\_%'),
    merchant_id text NOT NULL,
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),
    key_version integer NOT NULL,
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext  bytea NOT NULL,
    brand       text NOT NULL,
    bin         text NOT NULL CHECK (bin ~ '^[0-9]{6}$'),
    last4       text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month   smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year    smallint NOT NULL CHECK (exp_year BETWEEN 2000 AND 2200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, fingerprint)
);
-- Re-encryption looks for rows still under an old key version.
CREATE INDEX tokens_key_version ON vault.tokens (key_version);

-- Who asked for what, when, and how it ended. Never a PAN, never a CVC.
CREATE TABLE vault.audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    caller      text NOT NULL,
    operation   text NOT NULL,
    token_id    text,
    merchant_id text,
    outcome     text NOT NULL
);
CREATE INDEX audit_token ON vault.audit (token_id, at);

-- Key-encryption key versions (labels of AES keys inside the HSM). Exactly one is active: new data keys
-- are wrapped under it. Rows wrapped under a retired KEK still unwrap until `vault rewrap-keys` moves them.
CREATE TABLE vault.keks (
    version     integer PRIMARY KEY CHECK (version > 0),
    label       text NOT NULL UNIQUE,
    state       text NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX keks_one_active ON vault.keks (state) WHERE state = 'active';

-- Publishable keys (pk_test_...) for the public tokenization endpoint, owned by the vault: the vault never
-- reads the switch's schema. Stored as SHA-256 with a visible prefix, like the switch's secret keys.
CREATE TABLE vault.publishable_keys (
    id          text PRIMARY KEY,
    merchant_id text NOT NULL,
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
