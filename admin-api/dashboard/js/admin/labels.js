// How the API's enum values (providers, routing strategies) are named and coloured on the page.

export const PROVIDERS = { anthropic: 'Plan (Anthropic)', bedrock: 'Bedrock', none: 'Refused by the proxy' };
export const ROUTING = {
  plan_first: 'Plan first (Anthropic; Bedrock on rate limits and failures)',
  bedrock_only: 'Bedrock only',
  plan_only: 'Plan only (never Bedrock)',
};
export const ROUTING_SHORT = { plan_first: 'Plan first', bedrock_only: 'Bedrock only', plan_only: 'Plan only' };

export const PROVIDER_COLOR = { anthropic: 0, bedrock: 1, none: 5 };
