/** Prism's version, in banners, Health and the OpenAPI document. */
export const VERSION = "0.1.0";
