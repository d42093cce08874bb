// Runs Dolos (the @dodona/dolos-lib library) on the files named after the library folder and prints
// every pair's similarity as JSON lines. Called by hpc_mle/plagiarism.py; the library is imported by
// absolute path because ES modules ignore NODE_PATH.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [libRoot, language, ...files] = process.argv.slice(2);
const lib = await import(pathToFileURL(join(libRoot, "@dodona", "dolos-lib", "dist", "index.js")).href);
const dolos = new lib.Dolos({ language });
const report = await dolos.analyzePaths(files);
for (const pair of report.allPairs()) {
  console.log(JSON.stringify({ left: pair.leftFile.path, right: pair.rightFile.path, similarity: pair.similarity }));
}
