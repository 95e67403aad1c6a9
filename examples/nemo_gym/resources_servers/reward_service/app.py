"""NeMo Gym resources server ``reward_service``: forwards to a running reward service.

The reward service answers NeMo Gym's resources-server routes itself (``POST /verify`` etc.),
so any caller with its host and port can use it directly. NeMo Gym's launcher (``ng_run``,
rollout collection, NeMo-RL's NeMo Gym environment) only accepts servers it starts; this is the
one it starts. It adds what NeMo Gym's agents can't: the service's API key. Everything else
(scoring, masking, metrics) is the service's answer, passed back unchanged.

Config (configs/reward_service.yaml): ``reward_service_url``, ``reward_service_api_key``,
``timeout_s`` (per request, default 900), ``max_retries`` (429/503 answers waited out, default 20).
"""
import asyncio
from typing import Any, Optional

from aiohttp import ClientTimeout
from pydantic import ConfigDict

from nemo_gym.base_resources_server import (
    BaseResourcesServerConfig,
    BaseVerifyRequest,
    BaseVerifyResponse,
    SimpleResourcesServer,
)
from nemo_gym.config_types import AggregateMetrics, AggregateMetricsRequest
from nemo_gym.server_utils import get_response_json, raise_for_status, request


class RewardServiceConfig(BaseResourcesServerConfig):
    reward_service_url: str
    reward_service_api_key: Optional[str] = None
    timeout_s: float = 900.0
    max_retries: int = 20


class RewardServiceVerifyRequest(BaseVerifyRequest):
    # The dataset row's own fields (expected_answer, options, ...) are what the service scores by.
    model_config = ConfigDict(extra="allow")


class RewardServiceVerifyResponse(BaseVerifyResponse):
    # mask_sample, failure_kind, failure_reason, reward_service_result and the row's fields.
    model_config = ConfigDict(extra="allow")


class RewardServiceResourcesServer(SimpleResourcesServer):
    config: RewardServiceConfig

    async def _post(self, path: str, body: Any) -> Any:
        headers = {}
        if self.config.reward_service_api_key:
            headers["Authorization"] = f"Bearer {self.config.reward_service_api_key}"
        url = self.config.reward_service_url.rstrip("/") + path
        for attempt in range(self.config.max_retries + 1):
            response = await request("POST", url, json=body, headers=headers,
                                     timeout=ClientTimeout(total=self.config.timeout_s))
            # Overloaded (429) or starting (503): the service says when to come back.
            if response.status in (429, 503) and attempt < self.config.max_retries:
                retry_after = response.headers.get("Retry-After", "")
                await asyncio.sleep(float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 2.0)
                continue
            await raise_for_status(response)
            return await get_response_json(response)

    async def verify(self, body: RewardServiceVerifyRequest) -> RewardServiceVerifyResponse:
        return RewardServiceVerifyResponse.model_validate(await self._post("/verify", body.model_dump(mode="json")))

    async def aggregate_metrics(self, body: AggregateMetricsRequest) -> AggregateMetrics:
        return AggregateMetrics.model_validate(await self._post("/aggregate_metrics", body.model_dump(mode="json")))


if __name__ == "__main__":
    RewardServiceResourcesServer.run_webserver()
