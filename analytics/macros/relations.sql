{#- Relations without the catalog: dbt would write "warehouse"."amplitude"."events" (the
    catalog named after the file) into every view, and a view whose file is opened under another
    name (a copy, ATTACH ... AS x) would no longer find its tables. DuckDB binds a view's
    two-part names in the view's own catalog, so these views work under any name. -#}
{% macro ref() -%}
    {%- set version = kwargs.get('version') or kwargs.get('v') -%}
    {%- if varargs | length == 1 -%}
        {%- set relation = builtins.ref(varargs[0], version=version) -%}
    {%- else -%}
        {%- set relation = builtins.ref(varargs[0], varargs[1], version=version) -%}
    {%- endif -%}
    {%- do return(relation.include(database=False)) -%}
{%- endmacro %}

{% macro source(source_name, table_name) -%}
    {%- do return(builtins.source(source_name, table_name).include(database=False)) -%}
{%- endmacro %}

{#- The event date in the project's time zone, whatever the reading session's TimeZone is. -#}
{% macro local_date(column) -%}
    cast(timezone({{ project_timezone_literal() }}, {{ column }}) as date)
{%- endmacro %}

{% macro project_timezone_literal() -%}
    '{{ var("project_timezone", "UTC") | replace("'", "''") }}'
{%- endmacro %}

{#- Whether an event type is inactive in Amplitude's events list (non_active): such events do
    not make a user active and are left out of session lengths. Without a snapshot of the list,
    every event type counts as active. -#}
{% macro is_inactive(column) -%}
    coalesce({{ column }} in (
        select event_type from {{ source('amplitude', 'events_list_current') }}
        where non_active and event_type is not null
    ), false)
{%- endmacro %}

{#- Every date from the first to the last event_date of `relation` (events_unique, or a CTE
    of it), one row each: a day without events still gets its row, with zeros, as Amplitude's
    charts show it. -#}
{% macro event_dates(relation) -%}
    select unnest(range(min(event_date), max(event_date) + interval 1 day, interval 1 day))::date
        as event_date
    from {{ relation }}
{%- endmacro %}
