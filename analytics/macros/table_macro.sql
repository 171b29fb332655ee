{#- A DuckDB table macro as a model, so that it is an asset with lineage like the views:
        {{ config(materialized='table_macro', parameters='steps, first_day, last_day') }}
        select ... (the body may use the parameters by name)
    becomes CREATE OR REPLACE MACRO analytics.<model>(<parameters>) AS TABLE <body>.
    A macro body is bound when it is called, in the caller's catalog: open the warehouse file
    itself (or USE its catalog) before calling one. -#}
{% materialization table_macro, adapter='duckdb' %}
    {%- set parameters = config.require('parameters') -%}
    {{ run_hooks(pre_hooks) }}
    {% call statement('main') -%}
        create or replace macro {{ this.include(database=False) }}({{ parameters }}) as table
        {{ sql }}
    {%- endcall %}
    {{ run_hooks(post_hooks) }}
    {% do adapter.commit() %}
    {{ return({'relations': []}) }}
{% endmaterialization %}
