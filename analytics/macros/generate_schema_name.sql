{#- dbt's default prefixes a model's +schema with the target's ("main_analytics"); the models
    belong in exactly the schema they name. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
