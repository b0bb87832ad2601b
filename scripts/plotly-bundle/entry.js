// The Plotly that Charter's pages load: plotly.js core (which has scatter) plus the trace types
// Charter's figures use. A figure with another trace type draws nothing and logs an error, so add
// the type here (and rebuild with build.sh) before an engine emits it.
'use strict';

var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/bar'),
    require('plotly.js/lib/box'),
    require('plotly.js/lib/heatmap'),
    require('plotly.js/lib/scattergl'),
]);

module.exports = Plotly;
