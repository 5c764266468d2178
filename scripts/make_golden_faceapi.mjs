// Golden vectors for the face-api ports: the Node half of scripts/make_golden_faceapi.py.
//
// Runs face-api 1.7.15 (its `dist/face-api.node-wasm.js` build, which loads the pure-JS
// `@tensorflow/tfjs` package) on tfjs's CPU backend (not tfjs-node, not wasm) and writes the
// nets' outputs for the inputs the Python driver prepared. Do not run it by hand: run
//     python scripts/make_golden_faceapi.py
// which documents the one-time setup (a scratch npm project outside the repository).
//
// Usage: node make_golden_faceapi.mjs NODE_PROJECT_DIR MODEL_DIR IO_DIR
//   NODE_PROJECT_DIR  a directory whose node_modules holds @tensorflow/tfjs@4.22.0 and
//                     @vladmandic/face-api@1.7.15 (and tfjs-backend-wasm, which the build requires)
//   MODEL_DIR         the face-api model/ files (weights manifests + .bin)
//   IO_DIR            inputs.json + inputs.bin in (uint8 HWC RGB images), outputs.json +
//                     outputs.bin out (float32)
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [projectDir, modelDir, ioDir] = process.argv.slice(2);
if (!ioDir) {
  console.error('usage: node make_golden_faceapi.mjs NODE_PROJECT_DIR MODEL_DIR IO_DIR');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(projectDir), 'package.json'));
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

function check(cond, msg) {
  if (!cond) { console.error(`golden: ${msg}`); process.exit(1); }
}

function maxAbsDiff(a, b) {
  check(a.length === b.length, `length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  check(tf.getBackend() === 'cpu', `backend is ${tf.getBackend()}`);
  check(faceapi.version === '1.7.15', `face-api version ${faceapi.version}`);
  check(tf.version_core === '4.22.0', `tfjs-core version ${tf.version_core}`);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);

  const spec = JSON.parse(fs.readFileSync(path.join(ioDir, 'inputs.json'), 'utf8'));
  const bytes = fs.readFileSync(path.join(ioDir, 'inputs.bin'));
  const outputs = {};
  const chunks = [];
  let offset = 0;
  const save = (name, tensor) => {
    const data = Float32Array.from(tensor.dataSync());
    outputs[name] = { shape: tensor.shape, offset };
    chunks.push(Buffer.from(data.buffer));
    offset += data.byteLength;
  };

  for (const [group, images] of Object.entries(spec.groups)) {
    const tensors = images.map(({ shape, offset: o }) => {
      const n = shape[0] * shape[1] * shape[2];
      return tf.tensor3d(Float32Array.from(bytes.subarray(o, o + n)), shape, 'float32');
    });
    const input = await faceapi.toNetInput(tensors);   // a batch: each image padded + resized alone
    const ag = spec.nets[group].includes('age_gender');
    const ex = spec.nets[group].includes('expression');
    const fr = spec.nets[group].includes('recognition');
    if (ag) {
      const raw = faceapi.nets.ageGenderNet.runNet(input);
      const out = faceapi.nets.ageGenderNet.forwardInput(input);
      save(`${group}/age`, out.age);
      save(`${group}/gender_probs`, out.gender);
      save(`${group}/gender_logits`, raw.gender);
      // the public API reports the same numbers
      const api = await faceapi.nets.ageGenderNet.predictAgeAndGender(tensors);
      check(maxAbsDiff(api.map((p) => p.age), out.age.dataSync()) === 0, 'predictAgeAndGender age');
      const pMale = out.gender.arraySync().map((p) => p[0]);
      api.forEach((p, i) => check(p.gender === (pMale[i] > 0.5 ? 'male' : 'female'), 'gender label'));
    }
    if (ex) {
      save(`${group}/expression_logits`, faceapi.nets.faceExpressionNet.runNet(input));
      const probs = faceapi.nets.faceExpressionNet.forwardInput(input);
      save(`${group}/expression_probs`, probs);
      const api = await faceapi.nets.faceExpressionNet.predictExpressions(tensors);
      const order = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'];
      const apiFlat = api.flatMap((e) => order.map((k) => e[k]));
      check(maxAbsDiff(apiFlat, probs.dataSync()) === 0, 'predictExpressions order/values');
    }
    if (fr) {
      const desc = faceapi.nets.faceRecognitionNet.forwardInput(input);
      save(`${group}/descriptors`, desc);
      const api = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tensors);
      check(maxAbsDiff(api.flatMap((d) => Array.from(d)), desc.dataSync()) === 0,
        'computeFaceDescriptor');
    }
  }
  fs.writeFileSync(path.join(ioDir, 'outputs.bin'), Buffer.concat(chunks));
  fs.writeFileSync(path.join(ioDir, 'outputs.json'), JSON.stringify({
    outputs, versions: { faceapi: faceapi.version, tfjs: tf.version_core, backend: tf.getBackend() },
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
