// The one list of gradient rules autodiff consults, keyed by ONNX op type. An op missing here has no
// gradient: autodiff fails loudly naming it. Ops that only appear in backward graphs are absent on purpose.

import type { GradientRule } from './core.ts';
import * as elementwise from './elementwise.ts';
import * as indexing from './indexing.ts';
import * as matmul from './matmul.ts';
import * as nn from './nn.ts';
import * as reduce from './reduce.ts';
import * as shape from './shape.ts';

export const gradientRules: ReadonlyMap<string, GradientRule> = new Map<string, GradientRule>([
  ['Add', elementwise.addGradient],
  ['Sub', elementwise.subGradient],
  ['Mul', elementwise.mulGradient],
  ['Div', elementwise.divGradient],
  ['Pow', elementwise.powGradient],
  ['Neg', elementwise.negGradient],
  ['Sqrt', elementwise.sqrtGradient],
  ['Reciprocal', elementwise.reciprocalGradient],
  ['Exp', elementwise.expGradient],
  ['Log', elementwise.logGradient],
  ['Tanh', elementwise.tanhGradient],
  ['Erf', elementwise.erfGradient],
  ['Sigmoid', elementwise.sigmoidGradient],
  ['Relu', elementwise.reluGradient],
  ['Sin', elementwise.sinGradient],
  ['Cos', elementwise.cosGradient],
  ['Where', elementwise.whereGradient],
  ['Cast', elementwise.castGradient],
  ['MatMul', matmul.matmulGradient],
  ['ReduceSum', reduce.reduceSumGradient],
  ['ReduceMean', reduce.reduceMeanGradient],
  ['ReduceMax', reduce.reduceMaxGradient],
  ['Softmax', nn.softmaxGradient],
  ['LogSoftmax', nn.logSoftmaxGradient],
  ['LayerNormalization', nn.layerNormGradient],
  ['Gather', indexing.gatherGradient],
  ['GatherElements', indexing.gatherElementsGradient],
  ['Reshape', shape.reshapeGradient],
  ['Transpose', shape.transposeGradient],
  ['Squeeze', shape.squeezeGradient],
  ['Unsqueeze', shape.unsqueezeGradient],
  ['Expand', shape.expandGradient],
  ['Concat', shape.concatGradient],
  ['Split', shape.splitGradient],
  ['Slice', shape.sliceGradient],
]);
