-- Financial exports: the text cell function used by the export queries.

-- With spreadsheet_safe, a text cell that a spreadsheet would run as a formula (leading =, +, -,
-- @, tab or carriage return) is prefixed with an apostrophe so it shows as text (OWASP "CSV
-- injection"); the JSON export passes false and keeps the text as stored. IMMUTABLE and a single
-- SELECT, so the planner inlines it and folds the constant flag away.
CREATE OR REPLACE FUNCTION petcare_export_text(value text, spreadsheet_safe boolean) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        -- ascii() reads the first character's code without copying a substring: = + - @ tab CR.
        WHEN spreadsheet_safe AND ascii(value) IN (61, 43, 45, 64, 9, 13) THEN '''' || value
        ELSE value
    END
$$;
