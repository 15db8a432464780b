/**
 * The API's limits, defaults and formats, shared by the handlers (src/http/api.ts) and the OpenAPI document
 * that publishes them (src/http/openapi.ts), so the two cannot disagree.
 */

/** Radius and k limits: a passenger's screen, not a census (bbox is the operators' tool for that). */
export const MAX_K = 100;
export const DEFAULT_K = 10;
export const MAX_RADIUS_M = 50_000;
export const DEFAULT_RADIUS_M = 3000;
/** A rider's map around its pickup point: the streams' default view. */
export const DEFAULT_STREAM_RADIUS_M = 1000;
/**
 * The cars a rider's stream follows, nearest first (it may show a few more: whole map cells). What a
 * phone's map can show, and what it should download every second: a 1 km circle in a busy centre holds
 * about a thousand cars. The default is what nearest gives at most.
 */
export const MAX_STREAM_CARS = 1000;
export const DEFAULT_STREAM_CARS = 100;
export const MAX_BBOX_LIMIT = 1000;
export const DEFAULT_BBOX_LIMIT = 100;
/** A session body is two short ids: anything near this is not one. */
export const MAX_BODY_BYTES = 4096;
/** Page cursors: base64url of a driver id (at most 64 characters, so 86 of base64url; 128 is room). */
export const CURSOR_PATTERN = '^[A-Za-z0-9_-]{1,128}$';
