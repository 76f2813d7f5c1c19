// The HTTP API from the browser: the session cookie rides along; every change carries X-Verilabel (CSRF guard).

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `request failed (${status})`);
    this.status = status;
    this.field = error.field || null;
    this.type = error.type || "HTTPError";
  }
}

async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") options.headers["X-Verilabel"] = "1";
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, options);
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path, params) => call("GET", params ? `${path}?${query(params)}` : path),
  post: (path, body = {}) => call("POST", path, body),
  del: (path) => call("DELETE", path),
};

// Query strings with repeated keys for lists (?classes=a&classes=b); empty values left out.
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
  }
  return search.toString();
}

export const media = {
  thumbnail: (sampleId, size = 256) => `/api/v1/samples/${sampleId}/thumbnail?size=${size}`,
  image: (sampleId) => `/api/v1/samples/${sampleId}/image`,
  patch: (run, labelId, size = 256) => `/api/v1/runs/${encodeURIComponent(run)}/labels/${labelId}/patch?size=${size}`,
};
