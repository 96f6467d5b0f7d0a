// Runs doiuse-email (caniemail data) over HTML files and prints one JSON object per file.
//
//   node check.mjs NODE_MODULES_DIR CLIENT_GLOBS FILE...
//
// doiuse-email's own CLI stops at the first feature the data has no entry for
// on some client ("Feature `overflow-wrap` not found on `thunderbird.macos`"),
// so this checks each feature against each client on its own and lists such
// gaps as "no data" instead of giving up on the whole file. It also checks the
// rules inside @media blocks, which doiuse-email itself skips (it flags only
// the @media rule), since a client reads those selectors and properties too.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, clientGlobs, ...files] = process.argv.slice(2);
const { DoIUseEmail } = await import(
  pathToFileURL(join(nodeModules, "doiuse-email", "index.js")).href
);

class Tolerant extends DoIUseEmail {
  noData = [];

  checkStylesheet(stylesheet) {
    super.checkStylesheet(stylesheet);
    for (const rule of stylesheet.stylesheet?.rules ?? []) {
      if (rule.type === "media") this.checkStylesheet({ stylesheet: { rules: rule.rules ?? [] } });
    }
  }

  checkFeaturesSupport(featureTitles) {
    const clients = this.emailClients;
    try {
      for (const title of [featureTitles].flat()) {
        for (const client of clients) {
          this.emailClients = [client];
          try {
            super.checkFeaturesSupport(title);
          } catch (error) {
            if (!String(error.message).includes("not found on")) throw error;
            this.noData.push(`\`${title}\` has no data for \`${client}\``);
          }
        }
      }
    } finally {
      this.emailClients = clients;
    }
  }
}

for (const file of files) {
  const checker = new Tolerant({ emailClients: clientGlobs.split(",") });
  const result = checker.check(readFileSync(file, "utf8"));
  console.log(
    JSON.stringify({
      file,
      errors: result.errors ?? [],
      warnings: result.warnings ?? [],
      noData: [...new Set(checker.noData)],
    }),
  );
}
