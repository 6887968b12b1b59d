export * from './render.js';
export * from './install.js';
