(function(){
  var charts = document.querySelectorAll('div.chart'), pending = [];
  var cfg = {displaylogo:false, responsive:true, showSendToCloud:false, showEditInChartStudio:false,
             modeBarButtonsToRemove:['select2d','lasso2d']};
  charts.forEach(function(el){
    var spec = JSON.parse(document.getElementById(el.id + '-spec').textContent);
    pending.push(Plotly.newPlot(el, spec.data, spec.layout, cfg).then(function(){
      el.on('plotly_click', function(ev){
        var p = ev && ev.points && ev.points[0];
        if (p && typeof p.customdata === 'string' && p.customdata.charAt(0) === '#') { location.hash = p.customdata; }
      });
      // reason labels are <a href="#..."> links; plotly.js drops relative hrefs on file:// pages
      el.addEventListener('click', function(ev){
        var t = ev.target && ev.target.closest && ev.target.closest('g.ytick text, g.xtick text');
        var m = t && /href="(#[^"]+)"/.exec(t.getAttribute('data-unformatted') || '');
        if (m) { location.hash = m[1]; }
      });
    }));
  });
  Promise.all(pending).then(function(){ document.documentElement.setAttribute('data-charts-rendered', String(charts.length)); },
                            function(err){ document.documentElement.setAttribute('data-charts-error', String(err)); });
})();
