// Highlighting needs nothing from here: package.json declares the grammar. This
// starts `netdsl lsp` for .net files when vscode-languageclient is installed
// (`npm install` in this folder); without it the extension still highlights.
"use strict";

const vscode = require("vscode");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("netdsl");
  if (!config.get("server.enabled", true)) {
    return;
  }
  let lc;
  try {
    lc = require("vscode-languageclient/node");
  } catch (e) {
    console.log("netdsl: vscode-languageclient is not installed; highlighting only (see docs/editors.md)");
    return;
  }
  const server = {
    command: config.get("server.command", "netdsl"),
    args: config.get("server.args", ["lsp"]),
  };
  client = new lc.LanguageClient("netdsl", "netdsl", server, {
    documentSelector: [
      { scheme: "file", language: "netdsl" },
      { scheme: "untitled", language: "netdsl" },
    ],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
