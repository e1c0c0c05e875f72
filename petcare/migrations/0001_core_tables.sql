-- The tables shared with the main backend (DESIGN §5). Extra columns are nullable or defaulted,
-- because the backend inserts rows naming only the contract's columns.

CREATE TABLE stores (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    timezone   text NOT NULL DEFAULT 'UTC',
    email      text,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name        text NOT NULL,
    last_name         text NOT NULL,
    email             text,
    phone             text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),
    locale            text NOT NULL DEFAULT 'en',
    consent_reminders boolean NOT NULL DEFAULT false,
    preferred_channel text NOT NULL DEFAULT 'email' CHECK (preferred_channel IN ('email', 'sms')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name        text NOT NULL,
    species     text NOT NULL
);
CREATE INDEX pets_customer_id_idx ON pets (customer_id);

CREATE TABLE services (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0)
);

CREATE TABLE appointments (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id      uuid NOT NULL REFERENCES customers (id),
    pet_id           uuid NOT NULL REFERENCES pets (id),
    service_id       uuid NOT NULL REFERENCES services (id),
    store_id         uuid NOT NULL REFERENCES stores (id),
    starts_at        timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'confirmed', 'cancelled', 'completed', 'no_show')),
    reminder_sent_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- The reminder job's range query: upcoming, not yet reminded, still active.
CREATE INDEX appointments_due_reminder_idx ON appointments (starts_at)
    WHERE reminder_sent_at IS NULL AND status IN ('scheduled', 'confirmed');
CREATE INDEX appointments_customer_id_idx ON appointments (customer_id);
CREATE INDEX appointments_store_id_starts_at_idx ON appointments (store_id, starts_at);

CREATE TABLE invoices (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number         text NOT NULL UNIQUE,
    store_id       uuid NOT NULL REFERENCES stores (id),
    customer_id    uuid REFERENCES customers (id),
    issued_at      timestamptz NOT NULL,
    currency       char(3) NOT NULL,
    subtotal_cents bigint NOT NULL,
    tax_cents      bigint NOT NULL,
    total_cents    bigint NOT NULL,
    status         text NOT NULL
);
CREATE INDEX invoices_store_id_issued_at_idx ON invoices (store_id, issued_at);
CREATE INDEX invoices_issued_at_idx ON invoices (issued_at);

CREATE TABLE transactions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_id   uuid REFERENCES invoices (id),
    store_id     uuid NOT NULL REFERENCES stores (id),
    occurred_at  timestamptz NOT NULL,
    amount_cents bigint NOT NULL,
    currency     char(3) NOT NULL,
    method       text NOT NULL,
    reference    text
);
CREATE INDEX transactions_store_id_occurred_at_idx ON transactions (store_id, occurred_at);
CREATE INDEX transactions_occurred_at_idx ON transactions (occurred_at);

CREATE TABLE credit_notes (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number       text NOT NULL UNIQUE,
    invoice_id   uuid NOT NULL REFERENCES invoices (id),
    store_id     uuid NOT NULL REFERENCES stores (id),
    issued_at    timestamptz NOT NULL,
    amount_cents bigint NOT NULL,
    currency     char(3) NOT NULL,
    reason       text
);
CREATE INDEX credit_notes_store_id_issued_at_idx ON credit_notes (store_id, issued_at);
CREATE INDEX credit_notes_issued_at_idx ON credit_notes (issued_at);

CREATE TABLE financial_exports (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id     uuid REFERENCES stores (id),
    period_start date NOT NULL,
    period_end   date NOT NULL,
    format       text NOT NULL DEFAULT 'csv' CHECK (format IN ('csv', 'json')),
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    completed_at timestamptz,
    error        text,
    files        jsonb NOT NULL DEFAULT '[]'::jsonb,
    workflow_id  text,
    CHECK (period_start <= period_end)
);
CREATE INDEX financial_exports_pending_idx ON financial_exports (requested_at) WHERE status = 'pending';

CREATE TABLE products (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id            uuid NOT NULL REFERENCES stores (id),
    sku                 text NOT NULL,
    name                text NOT NULL,
    stock_quantity      integer NOT NULL DEFAULT 0,
    low_stock_threshold integer NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    UNIQUE (store_id, sku)
);

CREATE TABLE stock_movements (
    id          bigserial PRIMARY KEY,
    product_id  uuid NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity <> 0),
    kind        text NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    reference   text
);
CREATE INDEX stock_movements_product_id_idx ON stock_movements (product_id) INCLUDE (quantity);
