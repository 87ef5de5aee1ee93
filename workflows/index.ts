// Every workflow the workers register. Workers bundle this file; clients start workflows by these names.
export { doctor } from './doctor.ts';
export { dpoPipeline } from './dpo-pipeline.ts';
export { sweep } from './sweep.ts';
