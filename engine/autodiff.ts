// Reverse-mode autodiff over the graph builder: appends the backward pass to the same graph as ONNX nodes,
// looking every node's rule up in engine/ops/registry.ts. It never switches on op names.

import { isFloat } from './dtype.ts';
import { type Graph, isDifferentiable, type Node, type Tensor } from './graph.ts';
import { formatDims, ShapeError, shapesEqual } from './ops/dims.ts';
import { add } from './ops/elementwise.ts';
import { gradientRules } from './ops/registry.ts';
import { zerosLike } from './ops/shape.ts';

export interface GradOptions {
  /** Gradient of the loss itself; required when the loss is not a scalar. Defaults to 1. */
  seed?: Tensor;
  /** Return zeros for `wrt` tensors the loss does not depend on instead of failing. */
  allowUnused?: boolean;
}

/**
 * d loss / d wrt[i] for each i, as new tensors in the loss's graph. Only nodes on a path from some wrt to
 * the loss are differentiated; constants, frozen initializers, non-float values and stopGradient aliases
 * carry no gradient.
 */
export function grad(loss: Tensor, wrt: readonly Tensor[], options: GradOptions = {}): Tensor[] {
  const graph = loss.graph;
  checkArguments(graph, loss, wrt, options);
  const active = activeTensors(graph, loss, wrt);

  const contributions = new Map<Tensor, Tensor[]>([[loss, [options.seed ?? graph.scalar(1, loss.dtype)]]]);
  const gradientOf = (tensor: Tensor): Tensor | undefined => {
    const parts = contributions.get(tensor);
    if (!parts || parts.length === 0) return undefined;
    // Fan-out: two contributions make one Add, more make one Sum.
    const total =
      parts.length === 1
        ? parts[0]
        : parts.length === 2
          ? add(parts[0], parts[1])
          : graph.addNode('Sum', parts, [{ dtype: parts[0].dtype, dims: parts[0].dims }])[0];
    contributions.set(tensor, [total]);
    return total;
  };

  const forwardNodes = graph.nodes.slice();
  for (let i = forwardNodes.length - 1; i >= 0; i--) {
    const node = forwardNodes[i];
    if (!node.outputs.some((output) => active.has(output))) continue;
    const needed = node.inputs.map((input) => input !== undefined && active.has(input));
    if (!needed.some(Boolean)) continue;
    const rule = gradientRules.get(node.opType);
    if (!rule) throw new ShapeError(`no gradient for ${node.opType} (node ${node.name})`);
    const gradOutputs = node.outputs.map((output) => (active.has(output) ? gradientOf(output) : undefined));
    const thunks = rule({ node, inputs: node.inputs, outputs: node.outputs, gradOutputs });
    node.inputs.forEach((input, index) => {
      if (!input || !needed[index]) return;
      const thunk = thunks[index];
      if (!thunk)
        throw new ShapeError(
          `gradient rule for ${node.opType} (node ${node.name}) gave none for input ${index}`,
        );
      const gradient = thunk();
      checkGradient(node, index, input, gradient);
      const parts = contributions.get(input) ?? [];
      parts.push(gradient);
      contributions.set(input, parts);
    });
  }

  return wrt.map((tensor) => {
    const gradient = gradientOf(tensor);
    if (gradient) return gradient;
    if (options.allowUnused) return zerosLike(tensor);
    throw new ShapeError(`grad: the loss does not depend on ${tensor} (pass allowUnused for zeros)`);
  });
}

function checkArguments(graph: Graph, loss: Tensor, wrt: readonly Tensor[], options: GradOptions): void {
  if (!isFloat(loss.dtype)) throw new ShapeError(`grad: loss ${loss} is not a float tensor`);
  const seed = options.seed;
  if (seed && (seed.dtype !== loss.dtype || !shapesEqual(seed.dims, loss.dims))) {
    throw new ShapeError(`grad: seed ${seed} does not match loss ${loss}`);
  }
  if (!seed && loss.rank !== 0) {
    throw new ShapeError(
      `grad: loss ${loss} is not a scalar; reduce it or pass a seed of dims ${formatDims(loss.dims)}`,
    );
  }
  for (const tensor of wrt) {
    if (tensor.graph !== graph)
      throw new ShapeError(`grad: ${tensor} belongs to another graph than the loss`);
    if (!isDifferentiable(tensor)) {
      throw new ShapeError(
        `grad: ${tensor} (${tensor.source.kind}) carries no gradient: constant, frozen or not float`,
      );
    }
  }
}

/**
 * Tensors that depend on some wrt and that the loss depends on: a forward sweep from wrt, then a
 * backward sweep from the loss restricted to the forward set. Nodes only read non-float inputs' values.
 */
function activeTensors(graph: Graph, loss: Tensor, wrt: readonly Tensor[]): Set<Tensor> {
  const dependent = new Set<Tensor>(wrt);
  for (const node of graph.nodes) {
    if (!node.inputs.some((input) => input && dependent.has(input) && isFloat(input.dtype))) continue;
    for (const output of node.outputs) if (isFloat(output.dtype)) dependent.add(output);
  }
  const active = new Set<Tensor>();
  if (dependent.has(loss)) active.add(loss);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node: Node = graph.nodes[i];
    if (!node.outputs.some((output) => active.has(output))) continue;
    for (const input of node.inputs)
      if (input && dependent.has(input) && isFloat(input.dtype)) active.add(input);
  }
  return active;
}

function checkGradient(node: Node, index: number, input: Tensor, gradient: Tensor): void {
  if (gradient.dtype !== input.dtype || !shapesEqual(gradient.dims, input.dims)) {
    throw new ShapeError(
      `gradient rule for ${node.opType} (node ${node.name}) returned ${gradient.dtype} ${formatDims(gradient.dims)} ` +
        `for input ${index} of ${input.dtype} ${formatDims(input.dims)}`,
    );
  }
}
