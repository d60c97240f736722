-- The tables of medseg 0.1.0 as landed on 2026-12-02 (commit 06c5a74), the last release before
-- schema migrations: sqlite DDL of its create_all (the service tables, then the audit trail's;
-- tests/test_schema.py upgrades it).

CREATE TABLE alerts (
	id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	policy VARCHAR(16) NOT NULL, 
	opened_at DATETIME NOT NULL, 
	resolved_at DATETIME, 
	evidence JSON NOT NULL, 
	action TEXT NOT NULL, 
	webhook_state VARCHAR(16) NOT NULL, 
	webhook_attempts INTEGER NOT NULL, 
	webhook_next_at DATETIME NOT NULL, 
	webhook_error TEXT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_alerts_name ON alerts (name);

CREATE INDEX ix_alerts_state ON alerts (state);

CREATE TABLE api_tokens (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	roles VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(128) NOT NULL, 
	expires_at DATETIME, 
	revoked_at DATETIME, 
	last_used_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (name), 
	UNIQUE (digest)
);

CREATE TABLE jobs (
	id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	model_used VARCHAR(128) NOT NULL, 
	revision INTEGER NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	calling_ae VARCHAR(16) NOT NULL, 
	patient VARCHAR(64) NOT NULL, 
	accession VARCHAR(16) NOT NULL, 
	instances INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	started_at DATETIME, 
	finished_at DATETIME, 
	attempts INTEGER NOT NULL, 
	error_code VARCHAR(64) NOT NULL, 
	error TEXT NOT NULL, 
	seg_path TEXT NOT NULL, 
	seg_series_uid VARCHAR(64) NOT NULL, 
	seg_sop_uid VARCHAR(64) NOT NULL, 
	result JSON NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (study_uid, series_uid, model, revision)
);

CREATE INDEX ix_jobs_state ON jobs (state);

CREATE INDEX ix_jobs_study_uid ON jobs (study_uid);

CREATE TABLE model_registry (
	name VARCHAR(48) NOT NULL, 
	active VARCHAR(64) NOT NULL, 
	shadow VARCHAR(64) NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE model_registry_history (
	id INTEGER NOT NULL, 
	name VARCHAR(48) NOT NULL, 
	action VARCHAR(16) NOT NULL, 
	from_version VARCHAR(64) NOT NULL, 
	to_version VARCHAR(64) NOT NULL, 
	actor VARCHAR(64) NOT NULL, 
	reason TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_model_registry_history_name ON model_registry_history (name);

CREATE TABLE reviews (
	id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	job_id INTEGER, 
	study_uid VARCHAR(64) NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	door VARCHAR(16) NOT NULL, 
	submitted_by VARCHAR(128) NOT NULL, 
	reviewer VARCHAR(64) NOT NULL, 
	accepted BOOLEAN NOT NULL, 
	correction_sop_uid VARCHAR(64) NOT NULL, 
	stored_path TEXT NOT NULL, 
	site VARCHAR(16) NOT NULL, 
	scanner VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	dice FLOAT, 
	fn_rate FLOAT, 
	reference_lesions INTEGER NOT NULL, 
	detected_lesions INTEGER NOT NULL, 
	reference_lesions_ge10 INTEGER NOT NULL, 
	detected_lesions_ge10 INTEGER NOT NULL, 
	false_positive_lesions INTEGER NOT NULL, 
	hd95_mm FLOAT, 
	msd_mm FLOAT, 
	fp_volume_ml FLOAT, 
	volume_diff_ml FLOAT, 
	scores JSON NOT NULL, 
	note TEXT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_reviews_created_at ON reviews (created_at);

CREATE INDEX ix_reviews_job_id ON reviews (job_id);

CREATE INDEX ix_reviews_model ON reviews (model);

CREATE INDEX ix_reviews_status ON reviews (status);

CREATE INDEX ix_reviews_study_uid ON reviews (study_uid);

CREATE TABLE series (
	id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	calling_ae VARCHAR(16) NOT NULL, 
	patient VARCHAR(64) NOT NULL, 
	accession VARCHAR(16) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	revision INTEGER NOT NULL, 
	first_seen DATETIME NOT NULL, 
	note TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (study_uid, series_uid)
);

CREATE INDEX ix_series_study_uid ON series (study_uid);

CREATE TABLE shadow_results (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	candidate VARCHAR(128) NOT NULL, 
	active VARCHAR(128) NOT NULL, 
	dice FLOAT, 
	lesions_active INTEGER NOT NULL, 
	lesions_candidate INTEGER NOT NULL, 
	volume_active_ml FLOAT NOT NULL, 
	volume_candidate_ml FLOAT NOT NULL, 
	seconds_active FLOAT NOT NULL, 
	seconds_candidate FLOAT NOT NULL, 
	error TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_shadow_results_candidate ON shadow_results (candidate);

CREATE INDEX ix_shadow_results_job_id ON shadow_results (job_id);

CREATE TABLE study_features (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	features JSON NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_study_features_job_id ON study_features (job_id);

CREATE INDEX ix_study_features_model ON study_features (model);

CREATE TABLE worklist (
	id INTEGER NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	job_id INTEGER NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	seg_sop_uid VARCHAR(64) NOT NULL, 
	reason TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	closed_at DATETIME, 
	closed_by VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_worklist_study_uid ON worklist (study_uid);

CREATE TABLE deliveries (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	destination VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_status VARCHAR(32) NOT NULL, 
	last_error TEXT NOT NULL, 
	sent_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id)
);

CREATE INDEX ix_deliveries_job_id ON deliveries (job_id);

CREATE TABLE audit_events (
	seq INTEGER NOT NULL, 
	ts VARCHAR(32) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	outcome VARCHAR(8) NOT NULL, 
	reason_code VARCHAR(64) NOT NULL, 
	actor VARCHAR(64) NOT NULL, 
	study_uid VARCHAR(64) NOT NULL, 
	series_uid VARCHAR(64) NOT NULL, 
	sop_uid VARCHAR(64) NOT NULL, 
	job_id INTEGER, 
	model VARCHAR(128) NOT NULL, 
	model_sha256 VARCHAR(64) NOT NULL, 
	destination VARCHAR(64) NOT NULL, 
	patient VARCHAR(64) NOT NULL, 
	details TEXT NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	mac VARCHAR(64), 
	PRIMARY KEY (seq)
);

CREATE INDEX ix_audit_action_seq ON audit_events (action, seq);

CREATE INDEX ix_audit_actor_seq ON audit_events (actor, seq);

CREATE INDEX ix_audit_job ON audit_events (job_id);

CREATE INDEX ix_audit_model_seq ON audit_events (model, seq);

CREATE INDEX ix_audit_study_seq ON audit_events (study_uid, seq);

CREATE INDEX ix_audit_ts ON audit_events (ts);

CREATE TABLE audit_head (
	id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	keyed_from INTEGER, 
	mac VARCHAR(64), 
	PRIMARY KEY (id)
);
