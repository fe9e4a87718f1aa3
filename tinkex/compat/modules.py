"""Which tinkex module serves each ``tinker`` module path, as a table and a pure lookup.

The official SDK spreads its public names over many modules (``tinker.types.tensor_data``,
``tinker.lib.public_interfaces.rest_client``, ...); code written against it imports from those paths. tinkex keeps
the same names in fewer modules, so each official path maps onto the tinkex module that holds its names. A path
that the official 0.38 SDK does not have is not served (importing it fails, as it would with the official SDK).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVED_TINKER_VERSION", "ModuleRoute", "route_for", "served_paths"]

SERVED_TINKER_VERSION = "0.38.0"
"""The official SDK release whose API tinkex serves under ``import tinker`` (``tinker.__version__`` and
``importlib.metadata.version("tinker")`` report it, so code that gates features on the SDK version takes the
0.38 branch). tests/tinkex/compat checks it against the official surface tinkex's parity test is gated on."""


@dataclass(frozen=True)
class ModuleRoute:
    """How one ``tinker`` module path is served.

    ``target`` is the tinkex module whose names the path exposes (``None``: a package with no names of its own,
    such as ``tinker.lib``); ``is_package`` lets ``import tinker.x.y`` descend below it.
    """

    target: str | None
    is_package: bool = False


# The official SDK's modules under tinker/types/ (0.38, plus the one 0.16.1 had that 0.38 dropped): one per type.
# Its private helpers (_pydantic_types, ...) are not served.
_OFFICIAL_TYPE_MODULES = frozenset(
    """
    audit_log_entry audit_log_response auth_token_response billing_usage_request billing_usage_response checkpoint
    checkpoints_list_response client_config_request client_config_response client_dynamic_config_response
    copy_weights_request copy_weights_response create_custom_loss_request create_custom_loss_response
    create_model_request create_model_response create_sampling_session_request create_sampling_session_response
    create_session_request create_session_response current_checkpoint_storage_usage_request
    current_checkpoint_storage_usage_response cursor custom_loss_graph custom_loss_input datum dmel_chunk
    encoded_text_chunk event_type external_weights_urls_response forward_backward_input forward_backward_output
    forward_backward_request forward_request future_completion future_retrieve_request future_retrieve_response
    futures_retrieve_request futures_retrieve_response generic_event get_info_request get_info_response
    get_sampler_response get_server_capabilities_response get_session_response health_response
    image_asset_pointer_chunk image_chunk join_sampling_session_request join_sampling_session_response
    list_sessions_response load_weights_request load_weights_response lora_config loss_fn_inputs loss_fn_output
    loss_fn_type model_id model_input model_input_chunk optim_step_request optim_step_response optimizer
    prompt_alt_tokens provenance_spans request_error_category request_failed_response request_id sample_request
    sample_response sampled_sequence sampling_client_kind sampling_params save_weights_external_request
    save_weights_external_response save_weights_for_sampler_request save_weights_for_sampler_response
    save_weights_request save_weights_response search_owner session_end_event session_heartbeat_request
    session_heartbeat_response session_search_cursor session_search_request session_search_response
    session_start_event session_status session_status_query session_summary severity shared stop_reason
    telemetry_batch telemetry_event telemetry_response telemetry_send_request tensor_data tensor_dtype
    topk_logprobs training_run training_runs_response try_again_response unhandled_exception_event
    unload_model_request unload_model_response weights_info_response whoami_response
    """.split()
    # In 0.16.1 only; tinkex still has its type (code written for 0.16 keeps importing it from there).
    + ["checkpoint_archive_url_response"]
)

# The official modules under tinker/lib/public_interfaces/: each holds one client or future class, all of which
# tinkex exports from its top-level package.
_OFFICIAL_PUBLIC_INTERFACE_MODULES = frozenset(
    """
    admin_client api_future backcompat_client_future backcompat_sampling_client_future
    backcompat_training_client_future custom_loss rest_client rest_client_common sampling_client service_client
    training_client
    """.split()
)

_FIXED_ROUTES: dict[str, ModuleRoute] = {
    "tinker": ModuleRoute("tinkex", is_package=True),
    "tinker.types": ModuleRoute("tinkex.types", is_package=True),
    "tinker.auth": ModuleRoute("tinkex.auth"),
    "tinker.lib": ModuleRoute(None, is_package=True),
    "tinker.lib.public_interfaces": ModuleRoute("tinkex", is_package=True),
    # RetryConfig lives here officially; tinkex exports it from the top-level package.
    "tinker.lib.retry_handler": ModuleRoute("tinkex"),
}


def route_for(name: str) -> ModuleRoute | None:
    """The route serving the ``tinker`` module path ``name``, or ``None`` when the official SDK has no such module
    (or has it only as private machinery)."""
    fixed = _FIXED_ROUTES.get(name)
    if fixed is not None:
        return fixed
    parent, _, leaf = name.rpartition(".")
    if parent == "tinker.types" and leaf in _OFFICIAL_TYPE_MODULES:
        return ModuleRoute("tinkex.types")
    if parent == "tinker.lib.public_interfaces" and leaf in _OFFICIAL_PUBLIC_INTERFACE_MODULES:
        return ModuleRoute("tinkex")
    return None


def served_paths() -> list[str]:
    """Every ``tinker`` module path that is served, sorted (for error messages and docs)."""
    paths = set(_FIXED_ROUTES)
    paths.update(f"tinker.types.{leaf}" for leaf in _OFFICIAL_TYPE_MODULES)
    paths.update(f"tinker.lib.public_interfaces.{leaf}" for leaf in _OFFICIAL_PUBLIC_INTERFACE_MODULES)
    return sorted(paths)
